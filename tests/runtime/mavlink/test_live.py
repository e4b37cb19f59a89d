"""``runtime run --mavlink-in/--mavlink-out``: a video file over a small map, IMU/GPS from a pymavlink "autopilot"
over UDP, every estimate back as GPS_INPUT."""

from __future__ import annotations

import json
import math
import threading

import pytest

from .conftest import free_udp_port, open_peer, recv_all

ORTHO = "ortho/swissimage_zurich_a_0.5m.tif"


@pytest.fixture(scope="module")
def area(shared_data, tmp_path_factory):
    pytest.importorskip("rasterio")
    from maps.build import build_map
    from maps.geotiff import load_orthophoto
    from maps.package import MapPackage
    from runtime.encoder import load_encoder

    path = shared_data(ORTHO)
    enc = load_encoder("classical")
    root = tmp_path_factory.mktemp("mav_live")
    return MapPackage.load(build_map(load_orthophoto(path), enc, enc.contract, root / "map"))


def test_runtime_run_with_mavlink_in_and_out(pymavlink, area, tmp_path, capsys):
    import cv2

    from calibration.camera_io import default_camera, save_camera
    from calibration.geometry import Attitude
    from calibration.view import render
    from runtime.cli.onboard import main as runtime_main

    package = area
    imagery = package.imagery()
    cam = default_camera()
    save_camera(cam, tmp_path / "camera.yaml")
    x0, y0, x1, y1 = package.bounds
    video = tmp_path / "flight.avi"
    w = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 5.0, (cam.width, cam.height))
    for i in range(12):
        img, _ = render(imagery, cam, ((x0 + x1) / 2 + 3.0 * i, (y0 + y1) / 2), 60.0, Attitude(0.0, 0.0, 0.0))
        w.write(cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    w.release()

    in_port, out_port = free_udp_port(), free_udp_port()
    gcs = open_peer(f"udpin:127.0.0.1:{out_port}", sysid=1, compid=1)  # receives what SkyFix sends
    fc = open_peer(f"udpout:127.0.0.1:{in_port}", sysid=1, compid=1)  # the flight controller
    stop = threading.Event()

    def autopilot():  # level, nose east (NED yaw 90 deg), as the frames were rendered
        while not stop.wait(0.02):
            try:
                fc.mav.attitude_send(0, 0.0, 0.0, math.pi / 2, 0.0, 0.0, 0.0)
            except OSError:
                pass  # nobody listens yet

    th = threading.Thread(target=autopilot, daemon=True)
    th.start()
    track = tmp_path / "live.jsonl"
    try:
        code = runtime_main(["run", "--source", str(video), "--every-frame", "--map", str(package.path),
                             "--height", "60", "-o", str(track), "--camera", str(tmp_path / "camera.yaml"),
                             "--mavlink-in", f"udpin:127.0.0.1:{in_port}",
                             "--mavlink-out", f"udpout:127.0.0.1:{out_port}", "--mavlink-rate", "1000"])
        got = recv_all(gcs, "GPS_INPUT", n=None, timeout=5.0)
    finally:
        stop.set()
        th.join(2)
        fc.close()
        gcs.close()
    assert code == 0
    out = capsys.readouterr().out
    assert "MAVLink out gps_input" in out and "MAVLink in" in out
    recs = [json.loads(x) for x in track.read_text().splitlines()]
    assert len(recs) == 12 and len(got) == 12  # every estimate, in order (ceiling 1000 Hz)
    for r, m in zip(recs, got):
        assert m.time_usec == r["t_ns"] // 1000
        if r["lat"] is None or r["status"] == "LOST":
            assert m.fix_type == 1 and m.lat == 0
        else:
            assert m.fix_type == 3
            assert m.lat == round(r["lat"] * 1e7) and m.lon == round(r["lon"] * 1e7)
            assert m.horiz_accuracy == pytest.approx(r["sigma_m"], rel=1e-3)
    assert any(m.fix_type == 3 for m in got)
