"""``runtime run`` (issue 12): an absent --gps port is said at start and in the status lines; NMEA out carries the
estimate's altitude (--height + ground elevation), HDOP, fix kind and velocity, every sentence parsed by pynmea2."""

from __future__ import annotations

import json
import os

import pynmea2
import pytest

from runtime.cli.onboard import main as runtime_main

ORTHO = "ortho/swissimage_zurich_a_0.5m.tif"


@pytest.fixture(scope="module")
def area(shared_data, tmp_path_factory):
    pytest.importorskip("rasterio")
    from maps.build import build_map
    from maps.geotiff import load_orthophoto
    from maps.package import MapPackage
    from runtime.encoder import load_encoder

    enc = load_encoder("classical")
    root = tmp_path_factory.mktemp("live_nmea")
    map_dir = build_map(load_orthophoto(shared_data(ORTHO)), enc, enc.contract, root / "map")
    return MapPackage.load(map_dir)


def test_run_with_an_absent_gps_port_warns_and_nmea_out_tells_the_truth(area, tmp_path, capsys):
    import cv2

    from calibration.camera_io import default_camera, save_camera
    from calibration.geometry import Attitude
    from calibration.view import render

    package = area
    cam = default_camera()
    x0, y0, x1, y1 = package.bounds
    video = tmp_path / "flight.avi"
    w = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 5.0, (cam.width, cam.height))
    for i in range(10):
        img, _ = render(package.imagery(), cam, ((x0 + x1) / 2 + 3.0 * i, (y0 + y1) / 2), 60.0,
                        Attitude(0.0, 0.0, 0.0))
        w.write(cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    w.release()
    save_camera(cam, tmp_path / "camera.yaml")
    master, slave = os.openpty()
    os.set_blocking(master, False)
    absent = tmp_path / "ttyUSB7"
    try:
        track = tmp_path / "live.jsonl"
        assert runtime_main(["run", "--source", str(video), "--every-frame", "--map", str(package.path),
                             "--height", "60", "-o", str(track), "--nmea-out", os.ttyname(slave),
                             "--gps", str(absent), "--camera", str(tmp_path / "camera.yaml")]) == 0
        err = capsys.readouterr().err
        data = b""
        while True:
            try:
                chunk = os.read(master, 65536)
            except BlockingIOError:
                break
            if not chunk:
                break
            data += chunk
    finally:
        os.close(master)
        os.close(slave)
    # the absent port: a warning at start, in the status line, at the end
    assert f"warning: GPS port '{absent}' is not open (" in err
    assert "running on without GPS fixes until it opens" in err
    assert f"; WARNING: GPS {absent} NOT OPEN (" in err
    recs = [json.loads(x) for x in track.read_text().splitlines()]
    lines = [x for x in data.decode("ascii").split("\r\n") if x]
    assert len(lines) == 2 * len(recs) and len(recs) == 10
    msgs = [pynmea2.parse(x, check=True) for x in lines]
    for rec, gga, rmc in zip(recs, msgs[0::2], msgs[1::2]):
        assert gga.sentence_type == "GGA" and rmc.sentence_type == "RMC"
        assert int(gga.num_sats) == 0  # no GPS fix in use: no invented satellites
        if rec["status"] == "LOST" or rec["lat"] is None:
            assert int(gga.gps_qual) == 0 and rmc.status == "V" and gga.lat == ""
            continue
        assert int(gga.gps_qual) == (1 if rec["status"] == "OK" else 6)
        assert rmc.mode_indicator == ("A" if rec["status"] == "OK" else "E") and rmc.status == "A"
        assert gga.latitude == pytest.approx(rec["lat"], abs=2e-7)
        assert gga.longitude == pytest.approx(rec["lon"], abs=2e-7)
        assert float(gga.horizontal_dil) == pytest.approx(min(rec["sigma_m"] / 5.0, 99.99), abs=0.006)
        # --height 60 (times the image-based scale correction, within 0.5..2) + the map's ground elevation
        h = gga.altitude - package.ground_elevation_m
        assert 30.0 <= h <= 120.0 and gga.geo_sep == ""
        speed = (rec["ve_mps"] ** 2 + rec["vn_mps"] ** 2) ** 0.5
        assert rmc.spd_over_grnd == pytest.approx(speed / 0.514444, abs=1e-3)
    assert any(int(m.gps_qual) != 0 for m in msgs[0::2])
