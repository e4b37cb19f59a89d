"""Public dataset layouts from tiny fixtures: University-1652, VIGOR, CSV; malformed layouts and their messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from export.data import DataError
from export.data.layouts import LayoutError, load_csv_pairs, load_university1652, load_vigor


def _touch(p: Path) -> Path:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(b"\xff\xd8\xff\xd9")  # not a real image: loaders only read paths
    return p


# ---------------------------------------------------------------------------------------------------- University-1652
def _u1652(root: Path) -> Path:
    for b in ("0001", "0002"):
        for k in range(3):
            _touch(root / "train" / "drone" / b / f"image-{k:02d}.jpeg")
        _touch(root / "train" / "satellite" / b / f"{b}.jpg")
        _touch(root / "train" / "street" / b / "1.jpg")
        _touch(root / "test" / "query_drone" / b / "image-01.jpeg")
        _touch(root / "test" / "gallery_satellite" / b / f"{b}.jpg")
    return root


def test_university1652(tmp_path):
    root = _u1652(tmp_path / "University-Release")
    recs = load_university1652(root)
    assert len(recs) == 6 and recs[0].id == "0001" and recs[0].position is None
    assert recs[0].reference == root / "train" / "satellite" / "0001" / "0001.jpg"
    assert len(load_university1652(root, view="street")) == 2
    test = load_university1652(root, split="test")
    assert len(test) == 2 and test[1].reference.parent.name == "0002" and test[0].split == "test"


def test_university1652_malformed(tmp_path):
    root = _u1652(tmp_path / "u")
    with pytest.raises(LayoutError, match="expected a folder at .*google"):
        load_university1652(root, view="google")
    (root / "train" / "satellite" / "0002" / "0002.jpg").unlink()
    with pytest.raises(LayoutError, match="building '0002': expected exactly one satellite image.*found 0"):
        load_university1652(root)
    _touch(root / "train" / "satellite" / "0002" / "a.jpg")
    _touch(root / "train" / "satellite" / "0002" / "b.jpg")
    with pytest.raises(LayoutError, match="found 2"):
        load_university1652(root)
    with pytest.raises(LayoutError, match="split must be"):
        load_university1652(root, split="val")
    with pytest.raises(LayoutError, match="University-1652 root"):
        load_university1652(tmp_path / "missing")
    assert issubclass(LayoutError, DataError)


# ---------------------------------------------------------------------------------------------------- VIGOR
PANOS = ["abc_1,41.885101,-87.631564,.jpg", "x-Y_2,41.886000,-87.630000,.jpg"]
SATS = ["satellite_41.88510_-87.63156.png", "satellite_41.88520_-87.63140.png",
        "satellite_41.88500_-87.63170.png", "satellite_41.88490_-87.63150.png"]


def _vigor(root: Path, splits: str = "splits") -> Path:
    city = "Chicago"
    for p in PANOS:
        _touch(root / city / "panorama" / p)
    for s in SATS:
        _touch(root / city / "satellite" / s)
    lab = root / splits / city
    lab.mkdir(parents=True)
    (lab / "satellite_list.txt").write_text("\n".join(SATS) + "\n")
    line = lambda p: " ".join([p] + [f"{s} {1.5 * k} {-2.0 * k}" for k, s in enumerate(SATS)])  # noqa: E731
    (lab / "same_area_balanced_train.txt").write_text(line(PANOS[0]) + "\n")
    (lab / "same_area_balanced_test.txt").write_text(line(PANOS[1]) + "\n")
    (lab / "pano_label_balanced.txt").write_text(line(PANOS[0]) + "\n" + line(PANOS[1]) + "\n")
    return root


def test_vigor(tmp_path):
    root = _vigor(tmp_path / "VIGOR")
    recs = load_vigor(root, "train", cities=["Chicago"])
    assert len(recs) == 1
    r = recs[0]
    assert r.position == pytest.approx((41.885101, -87.631564))
    assert r.reference.name == SATS[0] and [s.name for s in r.semi_positives] == SATS[1:]
    assert r.offsets_px[2] == (3.0, -4.0) and r.query.name == PANOS[0]
    assert len(load_vigor(root, "train", same_area=False, cities=["Chicago"])) == 2


def test_vigor_cross_area_and_corrected(tmp_path):
    root = _vigor(tmp_path / "VIGOR", splits="splits__corrected")
    with pytest.raises(LayoutError, match="VIGOR city 'SanFrancisco'"):
        load_vigor(root, "test", same_area=False)
    recs = load_vigor(root, "test", same_area=False, cities=["Chicago"])
    assert [r.position[1] for r in recs] == pytest.approx([-87.631564, -87.63])


def test_vigor_malformed(tmp_path):
    root = _vigor(tmp_path / "VIGOR")
    lab = root / "splits" / "Chicago"
    (lab / "same_area_balanced_test.txt").write_text(f"{PANOS[1]} {SATS[0]} 1 2\n")
    with pytest.raises(LayoutError, match=r"same_area_balanced_test.txt:1: expected 13 fields"):
        load_vigor(root, "test", cities=["Chicago"])
    (lab / "same_area_balanced_test.txt").write_text(
        " ".join(["nolatlon.jpg"] + [f"{s} 0 0" for s in SATS]) + "\n")
    with pytest.raises(LayoutError, match="does not follow '<prefix>,<lat>,<lon>,.jpg'"):
        load_vigor(root, "test", cities=["Chicago"])
    (lab / "same_area_balanced_test.txt").write_text(
        " ".join([PANOS[1]] + [f"{s} 0 0" for s in SATS[:3]] + ["satellite_1.0_2.0.png 0 0"]) + "\n")
    with pytest.raises(LayoutError, match="is not in .*satellite_list.txt"):
        load_vigor(root, "test", cities=["Chicago"])
    (root / "Chicago" / "satellite" / SATS[3]).unlink()
    with pytest.raises(LayoutError, match="download is incomplete"):
        load_vigor(root, "train", cities=["Chicago"])
    (lab / "satellite_list.txt").unlink()
    with pytest.raises(LayoutError, match="satellite_list.txt is missing"):
        load_vigor(root, "train", cities=["Chicago"])
    with pytest.raises(LayoutError, match="VIGOR label folder"):
        load_vigor(tmp_path / "VIGOR" / "Chicago", "train")


# ---------------------------------------------------------------------------------------------------- CSV
def test_csv(tmp_path):
    _touch(tmp_path / "q" / "1.jpg")
    _touch(tmp_path / "r" / "1.png")
    absolute = _touch(tmp_path / "elsewhere" / "2.jpg")
    (tmp_path / "pairs.csv").write_text(
        "query,reference,lat,lon,split,note\n"
        "q/1.jpg,r/1.png,47.37,8.54,train,x\n"
        f"{absolute},r/1.png, -33.9 , 151.2,,\n")
    recs = load_csv_pairs(tmp_path / "pairs.csv")
    assert [r.position for r in recs] == [(47.37, 8.54), (-33.9, 151.2)]
    assert recs[0].query == tmp_path / "q" / "1.jpg" and recs[1].query == absolute
    assert recs[0].split == "train" and recs[1].split == ""


@pytest.mark.parametrize("text, message", [
    ("query,reference,latitude,lon\na,b,1,2\n", r"missing \['lat'\]"),
    ("query,reference,lat,lon\nq.jpg,r.png,north,8\n", "lat/lon must be numbers"),
    ("query,reference,lat,lon\nq.jpg,r.png,8.5,147.3\nq.jpg,r.png,147.3,8.5\n", r"pairs.csv:3: .* check the column order"),
    ("query,reference,lat,lon\nq.jpg,missing.png,1,2\n", "reference image .*missing.png does not exist"),
    ("query,reference,lat,lon\n", "no rows"),
])
def test_csv_malformed(tmp_path, text, message):
    _touch(tmp_path / "q.jpg")
    _touch(tmp_path / "r.png")
    (tmp_path / "pairs.csv").write_text(text)
    with pytest.raises(LayoutError, match=message):
        load_csv_pairs(tmp_path / "pairs.csv")


def test_csv_missing_file(tmp_path):
    with pytest.raises(LayoutError, match="not found; expected a file with the header query,reference,lat,lon"):
        load_csv_pairs(tmp_path / "none.csv")
