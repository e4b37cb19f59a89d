"""Camera models, chessboard calibration, mount extrinsics and ground-view geometry.

Depends on nothing else inside SkyFix. Heavy work (OpenCV) happens inside functions, not at import.
"""
