"""Events into the loop, estimates out as records: what every command and tool that replays a recording shares.

:func:`run_events` feeds time-ordered events (:mod:`runtime.events`) to a :class:`runtime.localizer.Localizer` and
turns each estimate into an :class:`runtime.outputs.EstimateRecord` (WGS84, ENU covariance, status, latency), written
to a track writer where one is given. :data:`ROLES` are the input roles a recording's reader is asked for.
"""

from __future__ import annotations

__all__ = ["ROLES", "record_of", "run_events"]


def record_of(out):
    """:class:`runtime.outputs.EstimateRecord` of a :class:`runtime.localizer.Output`."""
    from .outputs import EstimateRecord

    est = out.estimate
    cov = est.cov_xy
    return EstimateRecord(
        t_ns=int(est.t_ns), lat=out.lat, lon=out.lon, heading_deg=out.heading_deg, sigma_m=float(est.sigma_m),
        cov_en=((float(cov[0, 0]), float(cov[0, 1])), (float(cov[1, 0]), float(cov[1, 1]))),
        status=est.status.value, latency_ms=out.latency_ms, gps=est.gps_state, x_m=float(est.x), y_m=float(est.y),
        **_velocity_fields(est),
    )


def _velocity_fields(est) -> dict:
    """ve_mps / vn_mps / v_sigma_mps of a tracker estimate (none before initialisation)."""
    v = getattr(est, "velocity_xy", None)
    if v is None:
        return {}
    return {"ve_mps": float(v[0]), "vn_mps": float(v[1]), "v_sigma_mps": est.velocity_sigma_mps}


ROLES = ("camera", "camera_info", "gps", "imu")


def run_events(loop, events, writer=None, *, gps_only: bool = False, on_event=None) -> list:
    """Feed ``events`` (time order) to ``loop`` (:class:`runtime.localizer.Localizer`); every estimate becomes an
    :class:`runtime.outputs.EstimateRecord`, written to ``writer`` (a ``TrackWriter``, optional) and returned.
    ``gps_only``: each GPS fix gives an estimate (a recording without camera). ``on_event(event, n_records)`` is
    called after each event (progress)."""
    from .events import GpsFix

    records = []
    for ev in events:
        out = loop.on_gps(ev, output=True) if gps_only and isinstance(ev, GpsFix) else loop.process(ev)
        if out is not None:
            rec = record_of(out)
            if writer is not None:
                writer.write(rec)
            records.append(rec)
        if on_event is not None:
            on_event(ev, len(records))
    return records
