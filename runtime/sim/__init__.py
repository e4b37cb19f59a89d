"""Simulated flights over an orthophoto, written as ROS1 bags with standard messages (``skyfix simulate``).

Modules: :mod:`.config` (``SimConfig``, frozen, unknown keys rejected), :mod:`.trajectory` (C2-smooth constant-speed
paths: lawnmower, racetrack, waypoints, random), :mod:`.gnss` (noise, bias, outages, spoofing), :mod:`.photometric` (exposure,
white balance, blur, sensor noise, JPEG), :mod:`.flight`
(``simulate(config) -> SimSummary``; vehicles and sensor faults), :mod:`.randomize` (``draw_flight``, ``DomainRanges``,
``write_camera_file``: randomized flights), :mod:`.imagery` (``resample_ortho``: coarser satellite-like maps in another
CRS), :mod:`.cli` (``register(subparsers)``).

Bag layout (integer-ns stamps = record times, from ``start_time_ns``):

* ``/camera/image_raw/compressed`` sensor_msgs/CompressedImage, JPEG, ``camera_rate_hz`` (default 5 Hz);
* ``/camera/camera_info`` sensor_msgs/CameraInfo, one per frame (same stamp);
* ``/gps/fix`` sensor_msgs/NavSatFix, ``gps_rate_hz`` (5 Hz): truth + noise + bias (+ spoof jump), ENU diagonal
  covariance at the nominal sigma (``COVARIANCE_TYPE_DIAGONAL_KNOWN``), no message during outages;
* ``/gps/vel`` geometry_msgs/TwistWithCovarianceStamped with every fix (same stamp): true ENU velocity + white noise
  (``gps_velocity_sigma_mps``), covariance its square; none during outages; a spoof moves positions only;
* ``/imu/data`` sensor_msgs/Imu, ``imu_rate_hz`` (50 Hz): orientation = body (FLU) attitude in world ENU, body rates,
  specific force including gravity;
* ``/ground_truth/fix`` sensor_msgs/NavSatFix and ``/ground_truth/pose`` geometry_msgs/PoseStamped at every frame.
  The pose is in a local ENU frame whose origin is the first ground-truth fix projected to the ground (altitude =
  ground elevation), x east / y north (transverse Mercator centred there), z = height above ground; its
  ``header.frame_id`` is ``enu@LAT0,LON0,ALT0``.

Nothing is imported here: ``from runtime.sim.flight import simulate``.
"""
