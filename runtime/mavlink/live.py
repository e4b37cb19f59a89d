"""MAVLink for ``runtime run``: one object that opens the links asked for, feeds the loop and sends estimates.

``--mavlink-in URL``: IMU (ATTITUDE + HIGHRES_IMU) and, unless an NMEA ``--gps`` is given, GPS (GPS_RAW_INT) from
the flight controller. ``--mavlink-out URL``: estimates as ``--mavlink-msg`` (gps_input, vision, odometry) at most
``--mavlink-rate`` Hz. The same URL for both shares one link (one UDP socket or serial port).
"""

from __future__ import annotations

from .link import MavlinkLink
from .sink import MavlinkSink, SinkConfig, estimate_from_record
from .source import MavlinkDecoder, MavlinkSource

__all__ = ["LiveMavlink"]


class LiveMavlink:
    """The MAVLink side of the live process.

    Args:
        in_url: connection to read IMU/GPS from (None: none).
        out_url: connection to send estimates to (None: none).
        message, rate_hz, config: as :class:`~runtime.mavlink.sink.MavlinkSink`.
        gps: take GPS fixes from the flight controller (False when an NMEA receiver gives them).
        source_system, source_component: our MAVLink ids.
        time_source: GPS fix time stamps, ``"host"`` or ``"autopilot"``.
    Raises:
        MavlinkExtraError: pymavlink is not installed. MavlinkError: a bad URL or setting, a port that cannot open.
    """

    def __init__(self, in_url: str | None = None, out_url: str | None = None, *, message: str = "gps_input",
                 rate_hz: float = 5.0, config: SinkConfig = SinkConfig(), gps: bool = True, source_system: int = 1,
                 source_component: int = 191, time_source: str = "host", link_factory=MavlinkLink) -> None:
        self.links = []
        self.source = None
        self.sink = None
        try:
            out_link = in_link = None
            if out_url:
                out_link = link_factory(out_url, source_system=source_system, source_component=source_component)
                self.links.append(out_link)
                self.sink = MavlinkSink(out_link, message, rate_hz=rate_hz, config=config)
            if in_url:
                if out_link is not None and in_url == out_url:
                    in_link = out_link
                else:
                    in_link = link_factory(in_url, source_system=source_system, source_component=source_component,
                                           heartbeat_s=0 if out_link is not None else 1.0)
                    self.links.append(in_link)
                decoder = MavlinkDecoder(gps=gps, time_source=time_source, ignore_system=source_system,
                                         ignore_component=source_component)
                self.source = MavlinkSource(in_link, decoder=decoder)
        except BaseException:
            self.close()
            raise

    def drain(self) -> list:
        """IMU samples and GPS fixes received since the last call (oldest first); sends a heartbeat when due."""
        for link in self.links:
            link.heartbeat_if_due()
        return self.source.drain() if self.source is not None else []

    def send(self, record, *, alt_amsl_m=None, height_agl_m=None, vert_sigma_m=None) -> bool:
        """Offer one :class:`~runtime.outputs.EstimateRecord` to the sink (True when a message went out)."""
        if self.sink is None:
            return False
        att = self.source.decoder.latest_attitude_rpy_ned if self.source is not None else None
        est = estimate_from_record(record, alt_amsl_m=alt_amsl_m, height_agl_m=height_agl_m,
                                   vert_sigma_m=vert_sigma_m, attitude_rpy_ned=att)
        return self.sink.offer(est)

    def summary(self) -> str:
        parts = []
        if self.sink is not None:
            parts.append(f"MAVLink out {self.sink.message} {self.sink.counters.as_dict()}")
        if self.source is not None:
            parts.append(f"MAVLink in {self.source.counters}")
        return "; ".join(parts)

    @property
    def geoid_sep_m(self) -> float | None:
        """WGS84 ellipsoid height minus MSL altitude at the vehicle, from the flight controller's GPS_RAW_INT."""
        return self.source.decoder.geoid_sep_m if self.source is not None else None

    @property
    def notes(self) -> list[str]:
        return self.source.notes if self.source is not None else []

    def close(self) -> None:
        if self.source is not None:
            self.source.close()
        for link in self.links:
            link.close()
