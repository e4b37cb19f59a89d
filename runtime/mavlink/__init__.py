"""MAVLink to and from the flight controller (the ``mavlink`` extra: ``pip install 'skyfix[mavlink]'``).

* :mod:`.link`: connection strings (udpout:/udpin:/tcp:/serial), a MAVLink 2 link with a heartbeat.
* :mod:`.sink`: estimates as GPS_INPUT (ArduPilot), VISION_POSITION_ESTIMATE or ODOMETRY (PX4 EKF2), rate-limited.
* :mod:`.source`: ATTITUDE / HIGHRES_IMU / GPS_RAW_INT from the autopilot as ImuSample / GpsFix events.

Importing this package never imports pymavlink; opening a link without it raises
:class:`~runtime.mavlink.link.MavlinkExtraError`.
"""

from .link import LinkSpec, MavlinkError, MavlinkExtraError, MavlinkLink, parse_url, require_pymavlink
from .sink import MESSAGES, MavEstimate, MavlinkSink, SinkConfig, estimate_from_record
from .source import MavlinkDecoder, MavlinkSource

__all__ = ["LinkSpec", "MESSAGES", "MavEstimate", "MavlinkDecoder", "MavlinkError", "MavlinkExtraError",
           "MavlinkLink", "MavlinkSink", "MavlinkSource", "SinkConfig", "estimate_from_record", "parse_url",
           "require_pymavlink"]
