"""Smooth, constant-speed flight paths over an orthophoto.

A path is a polyline of control points (a lawnmower survey, random legs, a racetrack oval, or the user's waypoints)
made C2-smooth by a
uniform cubic B-spline: every leg is subdivided into pieces no longer than the *rounding distance* ``d`` (the corners
are kept as control points), the spline cuts each corner by about ``0.24 d`` (90 degrees) with a curvature of about
``2.8 / d``, and stays inside the convex hull of its control points, hence inside a rectangular area. The spline is
then re-parametrised by arc length (a table refined by Newton steps), so the vehicle flies it at a constant speed
``v``: velocity ``v T``, acceleration ``v^2 kappa N`` (continuous), bounded jerk.

Frames and units: x east, y north, metres in the orthophoto's :class:`~maps.geodesy.LocalFrame`; z = height above
the ground (metres, constant: ``altitude``); time in seconds from the start of the flight. Yaw (REP-103, radians,
counter-clockwise from east) follows the velocity.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import SimulationError

GRAVITY = 9.80665  # m/s^2
TRAJECTORIES = ("lawnmower", "racetrack", "waypoints", "random")

# Gauss-Legendre 4-point nodes/weights on [0, 1].
_GL_X = 0.5 + 0.5 * np.array([-0.8611363115940526, -0.3399810435848563, 0.3399810435848563, 0.8611363115940526])
_GL_W = 0.5 * np.array([0.3478548451374538, 0.6521451548625461, 0.6521451548625461, 0.3478548451374538])


@dataclass(frozen=True)
class Area:
    """An axis-aligned rectangle in local metres (x east, y north)."""

    x_min: float
    y_min: float
    x_max: float
    y_max: float

    @property
    def width(self) -> float:
        return self.x_max - self.x_min

    @property
    def height(self) -> float:
        return self.y_max - self.y_min

    def shrink(self, m: float) -> "Area":
        return Area(self.x_min + m, self.y_min + m, self.x_max - m, self.y_max - m)

    def contains(self, xy: np.ndarray, tol: float = 1e-6) -> np.ndarray:
        xy = np.asarray(xy, dtype=float).reshape(-1, 2)
        return (
            (xy[:, 0] >= self.x_min - tol) & (xy[:, 0] <= self.x_max + tol)
            & (xy[:, 1] >= self.y_min - tol) & (xy[:, 1] <= self.y_max + tol)
        )


# ============================================================================================== B-spline
class BSplinePath:
    """Uniform cubic B-spline over control points ``ctrl`` float[m, 2] (m >= 2), from ``ctrl[0]`` to ``ctrl[-1]``.

    Phantom end points ``2 P0 - P1`` and ``2 Pm - Pm-1`` make the curve start and end exactly on the first and last
    control point with a non-zero tangent. Parameter ``u`` in ``[0, m - 1]``.
    """

    def __init__(self, ctrl: np.ndarray, table_steps: int = 32) -> None:
        P = np.asarray(ctrl, dtype=float)
        if P.ndim != 2 or P.shape[1] != 2 or len(P) < 2:
            raise SimulationError(f"a path needs at least 2 control points [x, y], got shape {list(P.shape)}")
        keep = np.concatenate([[True], np.linalg.norm(np.diff(P, axis=0), axis=1) > 1e-6])
        P = P[keep]
        if len(P) < 2:
            raise SimulationError("a path needs at least 2 distinct control points")
        self.ctrl = P
        self.Q = np.concatenate([[2 * P[0] - P[1]], P, [2 * P[-1] - P[-2]]])
        self.n_seg = len(P) - 1
        # arc-length table: node u_j, cumulative length S_j
        self._u = np.linspace(0.0, self.n_seg, self.n_seg * table_steps + 1)
        du = np.diff(self._u)
        nodes = self._u[:-1, None] + du[:, None] * _GL_X[None, :]
        speed = np.linalg.norm(self.eval(nodes.ravel(), 1), axis=1).reshape(nodes.shape)
        self._S = np.concatenate([[0.0], np.cumsum(np.sum(speed * _GL_W, axis=1) * du)])
        self.length = float(self._S[-1])

    def eval(self, u, der: int = 0) -> np.ndarray:
        """float64[n, 2]: the ``der``-th derivative (0..3) with respect to ``u`` at ``u`` float[n]."""
        u = np.clip(np.asarray(u, dtype=float).ravel(), 0.0, self.n_seg)
        i = np.minimum(np.floor(u).astype(int), self.n_seg - 1)
        t = (u - i)[:, None]
        if der == 0:
            b = [(1 - t) ** 3 / 6, (3 * t**3 - 6 * t**2 + 4) / 6, (-3 * t**3 + 3 * t**2 + 3 * t + 1) / 6, t**3 / 6]
        elif der == 1:
            b = [-((1 - t) ** 2) / 2, (3 * t**2 - 4 * t) / 2, (-3 * t**2 + 2 * t + 1) / 2, t**2 / 2]
        elif der == 2:
            b = [1 - t, 3 * t - 2, 1 - 3 * t, t]
        elif der == 3:
            one = np.ones_like(t)
            b = [-one, 3 * one, -3 * one, one]
        else:
            raise ValueError(der)
        Q = self.Q
        return b[0] * Q[i] + b[1] * Q[i + 1] + b[2] * Q[i + 2] + b[3] * Q[i + 3]

    def _arc(self, u: np.ndarray) -> np.ndarray:
        """Arc length from 0 to ``u`` (float[n])."""
        j = np.clip(np.searchsorted(self._u, u, side="right") - 1, 0, len(self._u) - 2)
        u0 = self._u[j]
        h = u - u0
        nodes = u0[:, None] + h[:, None] * _GL_X[None, :]
        speed = np.linalg.norm(self.eval(nodes.ravel(), 1), axis=1).reshape(nodes.shape)
        return self._S[j] + np.sum(speed * _GL_W, axis=1) * h

    def u_at(self, s) -> np.ndarray:
        """Parameter ``u`` float[n] at arc lengths ``s`` float[n] (metres from the start, clipped to the path)."""
        s = np.clip(np.asarray(s, dtype=float).ravel(), 0.0, self.length)
        u = np.interp(s, self._S, self._u)
        for _ in range(4):
            speed = np.linalg.norm(self.eval(u, 1), axis=1)
            u = np.clip(u - (self._arc(u) - s) / np.maximum(speed, 1e-9), 0.0, self.n_seg)
        return u


# ============================================================================================== trajectory
@dataclass(frozen=True, eq=False)
class Kinematics:
    """Trajectory samples.

    Attributes:
        t_s: float64[n] seconds from the start.
        position: float64[n, 3] (x east, y north, z height above ground), metres.
        velocity: float64[n, 3] m/s. acceleration: float64[n, 3] m/s^2 (kinematic, without gravity).
        yaw: float64[n] radians (REP-103, counter-clockwise from east), the direction of the velocity.
    """

    t_s: np.ndarray
    position: np.ndarray
    velocity: np.ndarray
    acceleration: np.ndarray
    yaw: np.ndarray


@dataclass(frozen=True, eq=False)
class Trajectory:
    """A constant-speed, constant-height flight along ``path``.

    Attributes:
        path: the smooth ground track. speed_mps: ground speed. height_m: height above ground.
        duration_s: flight duration (the path is at least ``speed * duration`` long). kind: how it was made.
    """

    path: BSplinePath
    speed_mps: float
    height_m: float
    duration_s: float
    kind: str = "waypoints"

    def __post_init__(self) -> None:
        need = self.speed_mps * self.duration_s
        if self.path.length < need - 1e-6:
            raise SimulationError(
                f"the path is {self.path.length:.0f} m long but {self.duration_s:g} s at {self.speed_mps:g} m/s "
                f"needs {need:.0f} m"
            )

    def sample(self, t_s) -> Kinematics:
        """:class:`Kinematics` at times ``t_s`` (float[n] seconds; clipped to [0, duration])."""
        t = np.asarray(t_s, dtype=float).ravel()
        v = self.speed_mps
        u = self.path.u_at(np.clip(t, 0.0, self.duration_s) * v)
        p = self.path.eval(u, 0)
        d1 = self.path.eval(u, 1)
        d2 = self.path.eval(u, 2)
        n1 = np.linalg.norm(d1, axis=1, keepdims=True)
        T = d1 / n1
        normal_part = d2 - np.sum(d2 * T, axis=1, keepdims=True) * T
        acc = v * v * normal_part / (n1 * n1)
        n = len(t)
        position = np.column_stack([p, np.full(n, self.height_m)])
        velocity = np.column_stack([v * T, np.zeros(n)])
        acceleration = np.column_stack([acc, np.zeros(n)])
        yaw = np.arctan2(T[:, 1], T[:, 0])
        return Kinematics(t, position, velocity, acceleration, yaw)


def densify(poly: np.ndarray, d: float) -> np.ndarray:
    """Subdivide every leg of ``poly`` float[m, 2] into equal pieces no longer than ``d`` metres (corners kept)."""
    out = [poly[0]]
    for a, b in zip(poly[:-1], poly[1:]):
        n = max(1, int(math.ceil(np.linalg.norm(b - a) / d - 1e-9)))
        for k in range(1, n + 1):
            out.append(a + (b - a) * (k / n))
    return np.asarray(out)


def rounding_distance(speed_mps: float, max_accel_mps2: float) -> float:
    """Control-point spacing ``d`` that keeps a 90-degree corner's acceleration near ``max_accel`` (kappa ~ 2.83/d)."""
    return 2.83 * speed_mps**2 / max_accel_mps2


def polyline_length(poly: np.ndarray) -> float:
    return float(np.sum(np.linalg.norm(np.diff(poly, axis=0), axis=1)))


def lawnmower_polyline(area: Area, spacing: float, length: float, corner: int = 0,
                       min_spacing: float = 0.0) -> np.ndarray:
    """Boustrophedon legs along the longer side of ``area``, evenly spread over its width (the outer legs on its
    edges): at most ``spacing`` metres apart (coverage) unless that would bring them closer than ``min_spacing`` (the
    tightest U-turn the vehicle can fly), sweeping back and forth until the polyline is at least ``length`` metres.
    ``corner`` (0..3) picks the starting corner."""
    along_x = area.width >= area.height
    span_across = area.height if along_x else area.width
    n_legs = int(math.ceil(span_across / spacing - 1e-9)) + 1  # legs at most ``spacing`` apart
    if min_spacing > 0:
        n_legs = min(n_legs, int(math.floor(span_across / min_spacing + 1e-9)) + 1)
    n_legs = max(2, n_legs)
    offsets = np.linspace(0.0, span_across, n_legs) if n_legs > 1 else np.array([0.0])
    lo, hi = (area.x_min, area.x_max) if along_x else (area.y_min, area.y_max)
    base = area.y_min if along_x else area.x_min
    flip_across = corner in (2, 3)
    flip_along = corner in (1, 3)
    pts: list[tuple[float, float]] = []
    leg, step, forward = 0, 1, not flip_along
    total = 0.0
    for _ in range(100000):
        c = base + (span_across - offsets[leg] if flip_across else offsets[leg])
        a, b = (lo, hi) if forward else (hi, lo)
        for s in (a, b):
            pts.append((s, c) if along_x else (c, s))
        total = polyline_length(np.asarray(pts))
        if total >= length:
            break
        forward = not forward
        if not 0 <= leg + step < n_legs:
            step = -step
        leg += step
    return np.asarray(pts, dtype=float)


def racetrack_radius(area: Area, speed_mps: float, max_accel_mps2: float, margin_m: float | None = None) -> float:
    """Turn radius of a racetrack in ``area``: at least ``v^2 / a`` (the acceleration limit), larger when there is room
    (up to half the short side of ``area`` and a quarter of its long side, so that straights remain).

    Raises:
        SimulationError: the short side of ``area`` is narrower than the tightest turn (``2 v^2 / a``); the message
        names the fastest speed whose turns fit.
    """
    short, long_ = min(area.width, area.height), max(area.width, area.height)
    r_min = speed_mps**2 / max_accel_mps2
    if 2.0 * r_min > short + 1e-9:
        v_fit = math.floor(10.0 * math.sqrt(max_accel_mps2 * short / 2.0)) / 10.0
        why = (f" (the camera footprint needs {margin_m:.0f} m of valid imagery around the vehicle)"
               if margin_m is not None else "")
        raise SimulationError(
            f"a racetrack at {speed_mps:g} m/s turns with a radius of at least v^2/a = {r_min:.1f} m "
            f"(max_accel_mps2 = {max_accel_mps2:g}), so it needs a usable area {2 * r_min:.0f} m wide, but the usable "
            f"area is {area.width:.0f} x {area.height:.0f} m{why}; fly at most {v_fit:g} m/s (--speed {v_fit:g}), "
            "allow a larger acceleration (max_accel_mps2), fly lower or use a larger orthophoto"
        )
    return max(r_min, min(short / 2.0, long_ / 4.0))


def racetrack_polyline(area: Area, radius: float, length: float, clockwise: bool = False,
                       step: float = 2.0) -> np.ndarray:
    """An oval centred in ``area`` along its longer side: two straights ``2 radius`` apart joined by semicircles of
    ``radius`` (which must fit: ``2 radius`` <= the short side), flown from the middle of one straight, lap after
    lap, until the polyline is at least ``length`` metres. Points are at most ``step`` metres apart (so the B-spline
    follows the arcs: curvature ~ 1 / radius); every point lies inside ``area``."""
    along_x = area.width >= area.height
    long_ = area.width if along_x else area.height
    short = area.height if along_x else area.width
    if radius <= 0 or 2.0 * radius > short + 1e-9:
        raise SimulationError(f"a racetrack of radius {radius:.1f} m does not fit a {long_:.0f} m wide band")
    half = max(0.0, long_ / 2.0 - radius)  # half the length of a straight
    # one lap in (along, across) coordinates around the centre, counter-clockwise, from the middle of the lower straight
    n_straight = max(1, int(math.ceil(2.0 * half / step)))
    n_arc = max(8, int(math.ceil(math.pi * radius / step)))
    s_a = np.linspace(0.0, half, max(1, n_straight // 2) + 1)[:-1]
    lower_in = np.column_stack([s_a, np.full(len(s_a), -radius)])
    th = np.linspace(-math.pi / 2, math.pi / 2, n_arc + 1)[:-1]
    right = np.column_stack([half + radius * np.cos(th), radius * np.sin(th)])
    s_u = np.linspace(half, -half, n_straight + 1)[:-1]
    upper = np.column_stack([s_u, np.full(len(s_u), radius)])
    th = np.linspace(math.pi / 2, 3 * math.pi / 2, n_arc + 1)[:-1]
    left = np.column_stack([-half + radius * np.cos(th), radius * np.sin(th)])
    s_b = np.linspace(-half, 0.0, max(1, n_straight // 2) + 1)[:-1]
    lower_out = np.column_stack([s_b, np.full(len(s_b), -radius)])
    lap = np.concatenate([lower_in, right, upper, left, lower_out])
    if clockwise:
        lap[:, 1] = -lap[:, 1]
    lap_len = polyline_length(np.concatenate([lap, lap[:1]]))
    laps = int(math.ceil(length / lap_len)) + 1
    pts = np.concatenate([np.tile(lap, (laps, 1)), lap[:1]])
    # trim to what is needed (plus a little), keeping whole points
    cum = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(pts, axis=0), axis=1))])
    end = int(np.searchsorted(cum, length)) + 2
    pts = pts[: min(end, len(pts))]
    cx, cy = (area.x_min + area.x_max) / 2.0, (area.y_min + area.y_max) / 2.0
    if along_x:
        return np.column_stack([cx + pts[:, 0], cy + pts[:, 1]])
    return np.column_stack([cx - pts[:, 1], cy + pts[:, 0]])


def random_polyline(area: Area, gen: np.random.Generator, length: float, min_leg: float,
                    max_turn_deg: float = 90.0) -> np.ndarray:
    """Random waypoints inside ``area``: legs of at least ``min_leg`` metres (capped by the area's size) and turns
    of at most ``max_turn_deg``, until the polyline is at least ``length`` metres. Candidates are drawn uniformly in
    the area; a waypoint without an acceptable successor is dropped (backtracking)."""
    size = min(area.width, area.height)
    min_leg = min(min_leg, 0.6 * size)
    cos_max = math.cos(math.radians(max_turn_deg))

    def draw(k: int) -> np.ndarray:
        return np.column_stack([gen.uniform(area.x_min, area.x_max, k), gen.uniform(area.y_min, area.y_max, k)])

    pts = [draw(1)[0]]
    total = 0.0
    for _ in range(100000):
        if total >= length:
            break
        p = pts[-1]
        cand = draw(64)
        leg = cand - p
        dist = np.linalg.norm(leg, axis=1)
        ok = dist >= min_leg
        if len(pts) >= 2:
            h = pts[-1] - pts[-2]
            h = h / np.linalg.norm(h)
            ok &= (leg @ h) >= cos_max * dist
        idx = np.flatnonzero(ok)
        if idx.size:
            q = cand[idx[0]]
            pts.append(q)
            total += float(dist[idx[0]])
        elif len(pts) >= 2:
            total -= float(np.linalg.norm(pts[-1] - pts[-2]))
            pts.pop()
    else:  # pragma: no cover - needs an absurdly thin area
        raise SimulationError("could not draw a random path in the flight area; use --trajectory lawnmower")
    return np.asarray(pts)


def max_turn_deg(poly: np.ndarray) -> tuple[float, int]:
    """(largest turn angle in degrees, index of its vertex) of a polyline float[m, 2] (0, -1 for a straight one)."""
    d = np.diff(poly, axis=0)
    d = d[np.linalg.norm(d, axis=1) > 1e-9]
    if len(d) < 2:
        return 0.0, -1
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    cosang = np.clip(np.sum(d[:-1] * d[1:], axis=1), -1.0, 1.0)
    k = int(np.argmin(cosang))
    return math.degrees(math.acos(cosang[k])), k + 1


def loop_polyline(points: np.ndarray, length: float) -> np.ndarray:
    """``points`` as given; when shorter than ``length``, flown again from the start (closed loop) until long enough."""
    pts = np.asarray(points, dtype=float)
    if polyline_length(pts) >= length:
        return pts
    closed = np.concatenate([pts, pts[:1]])
    lap = polyline_length(closed)
    if lap <= 0:
        raise SimulationError("the waypoints are all the same point; give at least two distinct ones")
    laps = int(math.ceil(length / lap)) + 1
    return np.concatenate([closed] + [closed[1:]] * (laps - 1))


# ============================================================================================== area
def largest_rectangle(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """Largest axis-aligned all-True rectangle of bool[h, w] as (row0, col0, row1, col1) (exclusive), or None."""
    h, w = mask.shape
    heights = np.zeros(w + 1, dtype=int)
    best, best_area = None, 0
    for r in range(h):
        heights[:w] = np.where(mask[r], heights[:w] + 1, 0)
        stack: list[int] = []
        for c in range(w + 1):
            while stack and heights[stack[-1]] >= heights[c]:
                top = stack.pop()
                height = int(heights[top])
                left = stack[-1] + 1 if stack else 0
                area = height * (c - left)
                if area > best_area:
                    best_area, best = area, (r - height + 1, left, r + 1, c)
            stack.append(c)
    return best


def usable_mask(valid: np.ndarray, margin_px: float) -> np.ndarray:
    """``valid`` eroded by a disk of ``margin_px`` pixels: True where every pixel within ``margin_px`` is valid
    (pixels outside the raster count as invalid). Exact Euclidean distance transform, O(pixels)."""
    import cv2

    if margin_px <= 0:
        return valid.copy()
    padded = np.pad(valid.astype(np.uint8), 1, constant_values=0)
    dist = cv2.distanceTransform(padded, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)[1:-1, 1:-1]
    return dist > margin_px


def flight_area(ortho, margin_m: float, max_cells: int = 160) -> tuple[Area | None, np.ndarray]:
    """Where the vehicle may fly over ``ortho`` (fields image/mask/gsd/x_min/y_max).

    Returns:
        (the largest rectangle, local metres, inside which every point is at least ``margin_m`` from invalid or
        outside imagery — or None when there is none; the eroded mask bool[h, w] for exact checks).
    """
    allowed = usable_mask(np.asarray(ortho.mask, dtype=bool), margin_m / ortho.gsd)
    h, w = allowed.shape
    b = max(1, int(math.ceil(max(h, w) / max_cells)))
    hb, wb = -(-h // b), -(-w // b)
    padded = np.zeros((hb * b, wb * b), dtype=bool)
    padded[:h, :w] = allowed
    coarse = padded.reshape(hb, b, wb, b).all(axis=(1, 3))
    rect = largest_rectangle(coarse)
    if rect is None:
        return None, allowed
    r0, c0, r1, c1 = rect
    g = ortho.gsd * b
    # pixel edges: column c spans x_min + c*gsd .. ; row r spans y_max - r*gsd ..; keep half a pixel inside
    area = Area(
        ortho.x_min + c0 * g + 0.5 * ortho.gsd,
        ortho.y_max - r1 * g + 0.5 * ortho.gsd,
        ortho.x_min + min(c1 * b, w) * ortho.gsd - 0.5 * ortho.gsd,
        ortho.y_max - r0 * g - 0.5 * ortho.gsd,
    )
    return area, allowed


def outside_points(ortho, allowed: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """bool[n]: which ``xy`` float[n, 2] (local metres) fall outside ``allowed`` (a mask on ``ortho``'s grid)."""
    u = np.floor((xy[:, 0] - ortho.x_min) / ortho.gsd).astype(int)
    v = np.floor((ortho.y_max - xy[:, 1]) / ortho.gsd).astype(int)
    h, w = allowed.shape
    inside = (u >= 0) & (u < w) & (v >= 0) & (v < h)
    ok = np.zeros(len(xy), dtype=bool)
    ok[inside] = allowed[v[inside], u[inside]]
    return ~ok


# ============================================================================================== waypoints
def load_waypoints(path, frame) -> np.ndarray:
    """Read waypoints -> float64[n, 2] local metres (x east, y north) in ``frame`` (a maps.geodesy.LocalFrame).

    Formats:
      * ``.csv``/``.txt``: one waypoint a line, ``LAT,LON`` degrees; or with a header line ``lat,lon`` or ``x,y``
        (local metres of the orthophoto's frame); ``#`` starts a comment.
      * ``.yaml``/``.yml``/``.json``: a list of ``[lat, lon]`` pairs or of mappings ``{lat: .., lon: ..}`` /
        ``{x: .., y: ..}``; or a mapping ``{points: [...], frame: wgs84 | local}`` (pairs are then in that frame).

    Raises:
        SimulationError: unreadable file, fewer than 2 points, or entries of another form (the message shows the
        expected forms).
    """
    p = Path(path)
    expected = (
        "expected a CSV of 'lat,lon' lines (or a header 'x,y' for local metres), or YAML/JSON: a list of [lat, lon], "
        "{lat: .., lon: ..} or {x: .., y: ..}, or {points: [...], frame: wgs84|local}"
    )
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise SimulationError(f"cannot read waypoints file {p}: {exc}") from exc
    frame_kind = "wgs84"
    rows: list = []
    if p.suffix.lower() in (".yaml", ".yml", ".json"):
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise SimulationError(f"waypoints file {p} is not valid YAML/JSON: {exc}") from exc
        if isinstance(data, dict):
            unknown = sorted(set(map(str, data)) - {"points", "frame"})
            if unknown:
                raise SimulationError(f"waypoints file {p} has unknown keys {unknown}; {expected}")
            frame_kind = str(data.get("frame", "wgs84")).lower()
            if frame_kind not in ("wgs84", "local"):
                raise SimulationError(f"waypoints frame must be 'wgs84' or 'local', got {frame_kind!r} in {p}")
            data = data.get("points")
        if not isinstance(data, list):
            raise SimulationError(f"waypoints file {p}: {expected}")
        for i, item in enumerate(data):
            if isinstance(item, dict):
                keys = set(item)
                if keys == {"lat", "lon"}:
                    rows.append(("wgs84", item["lat"], item["lon"]))
                elif keys == {"x", "y"}:
                    rows.append(("local", item["x"], item["y"]))
                else:
                    raise SimulationError(f"waypoint {i} in {p} has keys {sorted(map(str, keys))}; {expected}")
            elif isinstance(item, (list, tuple)) and len(item) == 2:
                rows.append((frame_kind, item[0], item[1]))
            else:
                raise SimulationError(f"waypoint {i} in {p} is {item!r}; {expected}")
    else:
        for lineno, line in enumerate(text.splitlines(), 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            parts = [s.strip() for s in line.replace(";", ",").split(",")]
            if len(parts) != 2:
                raise SimulationError(f"{p}:{lineno}: {line!r} does not have 2 values; {expected}")
            head = [s.lower() for s in parts]
            if head in (["lat", "lon"], ["latitude", "longitude"]):
                frame_kind = "wgs84"
                continue
            if head == ["x", "y"]:
                frame_kind = "local"
                continue
            rows.append((frame_kind, parts[0], parts[1]))
    pts = []
    for i, (kind, a, b) in enumerate(rows):
        try:
            a, b = float(a), float(b)
        except (TypeError, ValueError):
            raise SimulationError(f"waypoint {i} in {p} is not numeric: {a!r}, {b!r}; {expected}") from None
        if not (math.isfinite(a) and math.isfinite(b)):
            raise SimulationError(f"waypoint {i} in {p} is not finite: {a}, {b}")
        if kind == "wgs84":
            if abs(a) > 90 or abs(b) > 180:
                raise SimulationError(
                    f"waypoint {i} in {p} ({a}, {b}) is not a latitude/longitude in degrees; local metres need a "
                    "header 'x,y' (CSV) or frame: local (YAML)"
                )
            x, y = frame.to_local(a, b)
            pts.append((float(x), float(y)))
        else:
            pts.append((a, b))
    if len(pts) < 2:
        raise SimulationError(f"waypoints file {p} holds {len(pts)} waypoint(s); at least 2 are needed; {expected}")
    return np.asarray(pts, dtype=float)
