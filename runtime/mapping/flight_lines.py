"""A survey's photos cut into flight lines (used by the mosaic's tilt from images, the attitude check and the
real-frame protocol)."""

from __future__ import annotations

import math

import numpy as np


def flight_lines(metas, turn_deg: float = 60.0, gap_s: float = 20.0) -> list[list[int]]:
    """Indices of ``metas`` (time order) grouped into flight lines: a new line where the bearing from one photo to
    the next turns by more than ``turn_deg`` from the previous bearing, or the photos are more than ``gap_s``
    apart."""
    from maps.geodesy import LocalFrame

    if not metas:
        return []
    frame = LocalFrame(float(np.mean([m.lat for m in metas])), float(np.mean([m.lon for m in metas])))
    x, y = frame.to_local(np.array([m.lat for m in metas]), np.array([m.lon for m in metas]))
    lines, cur, prev_b = [], [0], None
    for k in range(1, len(metas)):
        b = math.atan2(y[k] - y[k - 1], x[k] - x[k - 1])
        dt = (metas[k].t_ns - metas[k - 1].t_ns) * 1e-9
        turn = prev_b is not None and abs((b - prev_b + math.pi) % (2 * math.pi) - math.pi) > math.radians(turn_deg)
        if turn or dt > gap_s:
            lines.append(cur)
            cur, prev_b = [k], None
            continue
        cur.append(k)
        prev_b = b
    lines.append(cur)
    return lines
