"""Folder layouts of public cross-view geo-localization datasets, read as (query, reference, position) records.

* University-1652 (Zheng et al., ACM MM 2020): ``<root>/train/{drone,satellite,street,google}/<building id>/*``
  and ``<root>/test/{query,gallery}_{drone,satellite,street}/<building id>/*``. A building's satellite folder holds
  one image (the reference); the dataset carries no coordinates, so ``position`` is None.
* VIGOR (Zhu et al., CVPR 2021): ``<root>/<City>/panorama/<prefix>,<lat>,<lon>,.jpg``,
  ``<root>/<City>/satellite/satellite_<lat>_<lon>.png`` and ``<root>/<splits dir>/<City>/`` holding
  ``satellite_list.txt`` (one satellite file name a line), ``same_area_balanced_{train,test}.txt`` and
  ``pano_label_balanced.txt`` (cross-area; NewYork and Seattle train, SanFrancisco and Chicago test). A label line
  is ``<panorama> <positive sat> <dx> <dy> <semi 1> <dx> <dy> <semi 2> <dx> <dy> <semi 3> <dx> <dy>`` (offsets
  in satellite pixels). The splits folder is ``splits`` or the corrected ``splits__corrected``.
* CSV: a header with at least ``query,reference,lat,lon`` (extra columns ignored); relative paths are relative to
  the CSV file's folder.

Every loader returns a list of :class:`PairRecord`; a malformed layout raises :class:`LayoutError` saying what
was expected, what was found and how to fix it. Only paths are read (no image is opened).
"""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass
from pathlib import Path

from . import DataError

__all__ = ["PairRecord", "LayoutError", "load_university1652", "load_vigor", "load_csv_pairs",
           "VIGOR_CITIES", "VIGOR_CROSS_AREA"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp", ".bmp")
VIGOR_CITIES = ("Chicago", "NewYork", "SanFrancisco", "Seattle")
VIGOR_CROSS_AREA = {"train": ("NewYork", "Seattle"), "test": ("SanFrancisco", "Chicago")}
_U1652_VIEWS = ("drone", "street", "google")
_NUM = r"(-?\d+(?:\.\d+)?)"
_PANO_RE = re.compile(r"^(?P<prefix>[^,]+),(?P<lat>" + _NUM[1:-1] + r"),(?P<lon>" + _NUM[1:-1] + r"),?\.\w+$")
_SAT_RE = re.compile(r"^satellite_(?P<lat>" + _NUM[1:-1] + r")_(?P<lon>" + _NUM[1:-1] + r")\.\w+$")


class LayoutError(DataError):
    """A dataset folder or file that does not follow the expected layout."""


@dataclass(frozen=True)
class PairRecord:
    """One (query, reference) pair of a public dataset.

    Attributes:
        query: path of the query image (drone / street / panorama view).
        reference: path of the matching aerial (satellite) image.
        position: (lat, lon) degrees WGS84 of the query, or None when the dataset has none (University-1652).
        id: the dataset's identity of the place (building id, panorama name, CSV row).
        semi_positives: paths of semi-positive references (VIGOR), else empty.
        offsets_px: VIGOR's (dx, dy) offsets of the query in the positive and each semi-positive, pixels; else empty.
        split: "train", "test", "query", "gallery" or "" where the layout has no split.
    """

    query: Path
    reference: Path
    position: tuple[float, float] | None
    id: str
    semi_positives: tuple[Path, ...] = ()
    offsets_px: tuple[tuple[float, float], ...] = ()
    split: str = ""


def _dir(path: Path, what: str, fix: str) -> Path:
    if not path.is_dir():
        raise LayoutError(f"{what}: expected a folder at {path}, found {'a file' if path.exists() else 'nothing'}; {fix}")
    return path


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


# ---------------------------------------------------------------------------------------------------- University-1652
def load_university1652(root, split: str = "train", view: str = "drone") -> list[PairRecord]:
    """University-1652 pairs: every ``view`` image of a building with the building's satellite image.

    Args:
        root: the dataset folder (holding ``train/`` and ``test/``).
        split: "train" (``train/<view>`` with ``train/satellite``) or "test" (``test/query_<view>`` with
            ``test/gallery_satellite``: the drone/street queries against the satellite gallery).
        view: "drone", "street" or "google" (the last only in train).
    Returns:
        records sorted by building id then file name; ``position`` None (the dataset has no coordinates).
    Raises:
        LayoutError: missing folders, a building without its satellite image or with several, no pairs.
    """
    root = Path(root)
    if split not in ("train", "test"):
        raise LayoutError(f"University-1652 split must be 'train' or 'test', got {split!r}")
    if view not in _U1652_VIEWS:
        raise LayoutError(f"University-1652 view must be one of {_U1652_VIEWS}, got {view!r}")
    _dir(root, "University-1652 root", "pass the folder that holds train/ and test/ (University-Release)")
    base = _dir(root / split, "University-1652 split", f"the dataset root must hold a {split}/ folder")
    fix = f"expected {split}/{{drone,street,satellite}}/<building id>/*.jpg (train) or " \
          f"test/{{query,gallery}}_{{drone,street,satellite}}/<building id>/*.jpg"
    qdir = _dir(base / (view if split == "train" else f"query_{view}"), "University-1652 query views", fix)
    sdir = _dir(base / ("satellite" if split == "train" else "gallery_satellite"), "University-1652 satellite views", fix)
    records: list[PairRecord] = []
    for bdir in sorted(p for p in qdir.iterdir() if p.is_dir()):
        queries = _images(bdir)
        if not queries:
            continue
        sat_dir = sdir / bdir.name
        sats = _images(sat_dir) if sat_dir.is_dir() else []
        if len(sats) != 1:
            raise LayoutError(
                f"University-1652 building {bdir.name!r}: expected exactly one satellite image in {sat_dir}, found "
                f"{len(sats)} ({[s.name for s in sats][:5]}); the satellite folder must mirror the building ids of "
                f"{qdir.name}/")
        records += [PairRecord(q, sats[0], None, bdir.name, split=split) for q in queries]
    if not records:
        raise LayoutError(f"University-1652 {split}/{qdir.name}: no <building id>/ folder with images found; {fix}")
    return records


# ---------------------------------------------------------------------------------------------------- VIGOR
def _vigor_pano_position(name: str, where: str) -> tuple[float, float]:
    m = _PANO_RE.match(name)
    if not m:
        raise LayoutError(f"{where}: panorama name {name!r} does not follow '<prefix>,<lat>,<lon>,.jpg'; "
                          "VIGOR encodes each panorama's position in its file name")
    lat, lon = float(m["lat"]), float(m["lon"])
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise LayoutError(f"{where}: panorama {name!r} has an impossible position ({lat}, {lon})")
    return lat, lon


def load_vigor(root, split: str = "train", same_area: bool = True, cities=None, splits_dir: str | None = None,
               check_files: bool = True) -> list[PairRecord]:
    """VIGOR pairs with the positive and the three semi-positive satellite images.

    Args:
        root: the dataset folder (holding the city folders and ``splits``/``splits__corrected``).
        split: "train" or "test".
        same_area: True: ``same_area_balanced_<split>.txt`` of every city; False (cross-area):
            ``pano_label_balanced.txt`` of NewYork and Seattle (train) or SanFrancisco and Chicago (test).
        cities: override the cities read (names of folders under root).
        splits_dir: the label folder name; default ``splits__corrected`` when present, else ``splits``.
        check_files: check every listed panorama and satellite image exists (one directory listing per folder).
    Returns:
        records in file order; ``position`` = the panorama's (lat, lon) from its name.
    Raises:
        LayoutError: missing folders or label files, malformed label lines, satellites not in satellite_list.txt,
            missing image files.
    """
    root = Path(root)
    if split not in ("train", "test"):
        raise LayoutError(f"VIGOR split must be 'train' or 'test', got {split!r}")
    _dir(root, "VIGOR root", "pass the folder that holds Chicago/, NewYork/, ... and splits/")
    if splits_dir is None:
        splits_dir = "splits__corrected" if (root / "splits__corrected").is_dir() else "splits"
    labels_root = _dir(root / splits_dir, "VIGOR label folder",
                       "expected splits/<City>/{satellite_list.txt, same_area_balanced_train.txt, ...}")
    if cities is None:
        cities = VIGOR_CITIES if same_area else VIGOR_CROSS_AREA[split]
    label_name = f"same_area_balanced_{split}.txt" if same_area else "pano_label_balanced.txt"
    records: list[PairRecord] = []
    for city in cities:
        city_dir = _dir(root / city, f"VIGOR city {city!r}", f"expected {root / city}/{{panorama,satellite}}/")
        pano_dir = _dir(city_dir / "panorama", f"VIGOR city {city!r}", "expected a panorama/ folder")
        sat_dir = _dir(city_dir / "satellite", f"VIGOR city {city!r}", "expected a satellite/ folder")
        lab_dir = _dir(labels_root / city, f"VIGOR labels of {city!r}", f"expected {labels_root / city}/ with the label files")
        sat_list = lab_dir / "satellite_list.txt"
        if not sat_list.is_file():
            raise LayoutError(f"VIGOR labels of {city!r}: {sat_list} is missing; it lists the city's satellite images")
        sats = [s.strip() for s in sat_list.read_text(encoding="utf-8").splitlines() if s.strip()]
        for s in sats:
            if not _SAT_RE.match(s):
                raise LayoutError(f"{sat_list}: {s!r} does not follow 'satellite_<lat>_<lon>.png'")
        sat_set = set(sats)
        label_file = lab_dir / label_name
        if not label_file.is_file():
            raise LayoutError(f"VIGOR labels of {city!r}: {label_file} is missing (needed for "
                              f"{'same-area' if same_area else 'cross-area'} {split})")
        if check_files:
            have_pano = {p.name for p in pano_dir.iterdir()}
            have_sat = {p.name for p in sat_dir.iterdir()}
            missing = sorted(sat_set - have_sat)
            if missing:
                raise LayoutError(f"VIGOR city {city!r}: {len(missing)} satellite image(s) of satellite_list.txt are "
                                  f"not in {sat_dir} (e.g. {missing[:3]}); the download is incomplete")
        for n, line in enumerate(label_file.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            where = f"{label_file}:{n}"
            parts = line.split()
            if len(parts) != 13:
                raise LayoutError(f"{where}: expected 13 fields '<pano> (<sat> <dx> <dy>) x 4', got {len(parts)}: {line!r}")
            pano = parts[0]
            pos = _vigor_pano_position(pano, where)
            refs, offs = [], []
            for k in range(4):
                sat, dx, dy = parts[1 + 3 * k: 4 + 3 * k]
                if sat not in sat_set:
                    raise LayoutError(f"{where}: satellite {sat!r} is not in {sat_list}")
                try:
                    offs.append((float(dx), float(dy)))
                except ValueError:
                    raise LayoutError(f"{where}: offsets of {sat!r} must be numbers (pixels), got {dx!r} {dy!r}") from None
                refs.append(sat_dir / sat)
            if check_files and pano not in have_pano:
                raise LayoutError(f"{where}: panorama {pano!r} is not in {pano_dir}; the download is incomplete")
            records.append(PairRecord(pano_dir / pano, refs[0], pos, f"{city}/{pano}", tuple(refs[1:]), tuple(offs), split))
    if not records:
        raise LayoutError(f"VIGOR {split} ({'same' if same_area else 'cross'}-area): the label files of {list(cities)} "
                          "hold no pairs")
    return records


# ---------------------------------------------------------------------------------------------------- CSV
CSV_COLUMNS = ("query", "reference", "lat", "lon")


def load_csv_pairs(path, check_files: bool = True) -> list[PairRecord]:
    """Pairs from a CSV with a header holding ``query,reference,lat,lon`` (other columns ignored; ``split`` is
    kept when present). Relative image paths are relative to the CSV's folder.

    Raises:
        LayoutError: missing file or columns, a non-numeric or impossible lat/lon, missing images, no rows.
    """
    path = Path(path)
    if not path.is_file():
        raise LayoutError(f"pair CSV {path} not found; expected a file with the header {','.join(CSV_COLUMNS)}")
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        header = [h.strip() for h in (reader.fieldnames or [])]
        missing = [c for c in CSV_COLUMNS if c not in header]
        if missing:
            raise LayoutError(f"{path}: the header must name the columns {list(CSV_COLUMNS)}; missing {missing}, "
                              f"found {header}")
        records = []
        for n, row in enumerate(reader, 2):
            row = {(k or "").strip(): (v or "").strip() if isinstance(v, str) else v for k, v in row.items()}
            where = f"{path}:{n}"
            try:
                lat, lon = float(row["lat"]), float(row["lon"])
            except (TypeError, ValueError):
                raise LayoutError(f"{where}: lat/lon must be numbers in degrees, got {row.get('lat')!r}, {row.get('lon')!r}") from None
            if not (math.isfinite(lat) and math.isfinite(lon) and -90 <= lat <= 90 and -180 <= lon <= 180):
                raise LayoutError(f"{where}: ({lat}, {lon}) is not a WGS84 (lat, lon) in degrees; check the column order")
            paths = []
            for col in ("query", "reference"):
                if not row[col]:
                    raise LayoutError(f"{where}: the {col} column is empty; give an image path")
                p = Path(row[col])
                p = p if p.is_absolute() else path.parent / p
                if check_files and not p.is_file():
                    raise LayoutError(f"{where}: {col} image {p} does not exist (relative paths are relative to {path.parent})")
                paths.append(p)
            records.append(PairRecord(paths[0], paths[1], (lat, lon), str(n - 1), split=row.get("split", "") or ""))
    if not records:
        raise LayoutError(f"{path}: no rows below the header")
    return records
