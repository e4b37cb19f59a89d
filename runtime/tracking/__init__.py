"""Pure tracking core: a particle filter fusing visual retrieval candidates, a gated GPS and IMU yaw/velocity.

No I/O: callers convert events (runtime.events) into :meth:`ParticleTracker.predict`, :meth:`~ParticleTracker.
update_gps` and :meth:`~ParticleTracker.update_visual` calls, and read :meth:`~ParticleTracker.estimate`. Units:
local metres (maps.geodesy.LocalFrame, ENU x east, y north), ENU yaw radians (0 = east, CCW), integer nanoseconds.
"""

from .config import TrackerConfig
from .errors import TrackingError
from .estimate import Status, TrackEstimate
from .measurements import GpsDecision, VisualFix
from .particle_filter import ParticleTracker, bench_tracker

__all__ = [
    "GpsDecision",
    "ParticleTracker",
    "Status",
    "TrackEstimate",
    "TrackerConfig",
    "TrackingError",
    "VisualFix",
    "bench_tracker",
]
