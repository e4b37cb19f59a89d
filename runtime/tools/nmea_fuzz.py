"""NMEA parser fuzz (``skyfix bench nmea-fuzz``): feed :class:`runtime.nmea.NmeaParser` random and mutated input and
count what escapes.

The parser promises never to raise on what a stream holds: every line ends in a counter with a reason. This tool
checks the promise on ``n`` inputs made from a seeded generator:

* ``valid``: well-formed GGA / GNS / RMC / GSV sentences with random plausible values (the parser must take them);
* ``field``: a valid sentence with one field replaced by a hostile value (``1e308``, ``NaN``, ``inf``, 400 digits,
  ``-0``, ``1_0``, full-width digits, a right-to-left mark, high-bit characters, an empty field, ...) and the
  checksum **recomputed**, so the value reaches the field parsers (HDOP 1e308 with a valid checksum was the bug);
* ``mutate``: a valid sentence with bytes flipped, inserted, deleted, truncated or duplicated (checksum as it falls);
* ``long``: lines of 1k to 10k characters (with and without a ``$`` sentence at the end);
* ``binary``: random bytes, high bits set, embedded NUL / CR / LF / ``$``;
* ``unicode``: sentences as ``str`` with non-ASCII characters.

Each input goes to :meth:`NmeaParser.parse_line` (as ``bytes`` or ``str``) or, in random chunks, to
:meth:`NmeaParser.feed`; the parser is replaced every few thousand inputs (fresh state) and flushed. Reported:
``escaped`` (exceptions that came out of the parser: must be 0), ``internal_errors`` (exceptions of the parser's code
caught by its own safety net: a bug even though nothing escaped; must be 0 too), ``bad_fixes`` (fixes with a
non-finite or out-of-range value), the counted skips by reason, and the throughput (inputs/s over the parser's own
time, and over the wall time with input generation).
"""

from __future__ import annotations

import math
import random
import time
from collections import Counter

from ..nmea import NmeaParser

KINDS = ("valid", "field", "mutate", "long", "binary", "unicode")
#: share of each kind among the inputs
WEIGHTS = (0.2, 0.35, 0.25, 0.02, 0.1, 0.08)
HOSTILE = ("1e308", "-1e308", "1E5", "NaN", "nan", "inf", "-inf", "Infinity", "9" * 400, "-" + "9" * 30, "0x1F",
           "1_0", "-0", "+1", ".", "..", "-", "", " ", "12 ", "\uff11\uff12", "\u202e12", "\u00e9", "\u00ff\u00fe",
           "\x7f", "\x00", "99.99", "100.1", "1000000", "-1", "4807.038", "N", "A", "*", "$GPGGA", "1e-400",
           "00000000000000000000000000001", "3.4028235e+38", "\ud800")


def _checksum(body: str) -> int:
    value = 0
    for ch in body.encode("utf-8", "surrogatepass"):
        value ^= ch
    return value


def _sentence(body: str) -> str:
    return f"${body}*{_checksum(body):02X}"


def _ddmm(rng: random.Random, is_lat: bool) -> tuple[str, str]:
    deg = rng.uniform(0, 89.99 if is_lat else 179.99)
    d = int(deg)
    text = f"{d:02d}{(deg - d) * 60:08.5f}" if is_lat else f"{d:03d}{(deg - d) * 60:08.5f}"
    return text, rng.choice("NS" if is_lat else "EW")


def _valid_body(rng: random.Random, tod: int) -> str:
    talker = rng.choice(("GP", "GN", "GL", "GA", "BD"))
    hh, rem = divmod(tod, 3600)
    mm, ss = divmod(rem, 60)
    t = f"{hh:02d}{mm:02d}{ss:02d}.{rng.randrange(100):02d}"
    la, ns = _ddmm(rng, True)
    lo, ew = _ddmm(rng, False)
    kind = rng.random()
    if kind < 0.45:
        return (f"{talker}GGA,{t},{la},{ns},{lo},{ew},{rng.choice('0124569')},{rng.randrange(0, 30):02d},"
                f"{rng.uniform(0.5, 20):.1f},{rng.uniform(-100, 9000):.1f},M,{rng.uniform(-100, 80):.1f},M,,")
    if kind < 0.8:
        d = f"{rng.randrange(1, 29):02d}{rng.randrange(1, 13):02d}{rng.randrange(100):02d}"
        return (f"{talker}RMC,{t},{rng.choice('AAV')},{la},{ns},{lo},{ew},{rng.uniform(0, 80):.2f},"
                f"{rng.uniform(0, 360):.1f},{d},,,{rng.choice('ADEN')}")
    if kind < 0.9:
        return (f"{talker}GNS,{t},{la},{ns},{lo},{ew},{rng.choice(('AN', 'DA', 'RR', 'NN', 'E'))},"
                f"{rng.randrange(0, 30):02d},{rng.uniform(0.5, 20):.1f},{rng.uniform(-100, 9000):.1f},"
                f"{rng.uniform(-100, 80):.1f},,,V")
    return f"{talker}GSV,3,1,11,03,03,111,00,04,15,270,00,06,01,010,00,13,06,292,00"


def make_input(rng: random.Random, kind: str, tod: int) -> bytes | str:
    """One fuzz input of ``kind`` (see :data:`KINDS`): bytes, or a str for ``unicode``/some ``field`` inputs."""
    body = _valid_body(rng, tod)
    if kind == "valid":
        return (_sentence(body) + "\r\n").encode("ascii")
    if kind == "field":
        parts = body.split(",")
        for _ in range(1 + (rng.random() < 0.2)):
            parts[rng.randrange(1, len(parts))] = rng.choice(HOSTILE)
        line = _sentence(",".join(parts)) + "\r\n"
        if rng.random() < 0.5:
            return line
        return line.encode("utf-8", "surrogatepass")
    if kind == "mutate":
        b = bytearray((_sentence(body) + "\r\n").encode("ascii"))
        for _ in range(rng.randrange(1, 4)):
            op = rng.randrange(6)
            i = rng.randrange(len(b)) if b else 0
            if op == 0 and b:
                b[i] ^= 1 << rng.randrange(8)
            elif op == 1:
                b.insert(i, rng.randrange(256))
            elif op == 2 and b:
                del b[i]
            elif op == 3:
                b = b[:i]
            elif op == 4:
                b = b[:i] + b
            else:
                b[i:i] = rng.choice((b",", b"*", b"$", b"\r\n", b",,,,", b"*00"))
        return bytes(b)
    if kind == "long":
        n = rng.randrange(1_000, 10_001)
        filler = rng.choice((b"A", b",", b"9", b"$", b"\xff", b"1e308,"))
        line = (filler * n)[:n]
        if rng.random() < 0.5:
            line += _sentence(body).encode("ascii")
        return line + b"\r\n"
    if kind == "binary":
        n = rng.randrange(1, 300)
        data = bytes(rng.randrange(256) for _ in range(n))
        if rng.random() < 0.3:
            data = data[: n // 2] + b"$GPGGA," + data[n // 2:]
        return data
    # unicode: a sentence as str with non-ASCII characters, checksum over its UTF-8 bytes or not
    parts = body.split(",")
    i = rng.randrange(len(parts))
    parts[i] = parts[i] + rng.choice(("\u00e9", "\u4e2d", "\U0001f680", "\u202e", "\u0660", "\ufeff", "\ud800"))
    text = ",".join(parts)
    return _sentence(text) if rng.random() < 0.5 else f"${text}*00"


def _check_fix(fix) -> bool:
    ok = -90 <= fix.lat <= 90 and -180 <= fix.lon <= 180 and (math.isfinite(fix.alt) or math.isnan(fix.alt))
    if fix.cov_enu is not None:
        ok = ok and all(math.isfinite(float(v)) for v in fix.cov_enu.ravel())
    if fix.velocity_enu is not None:
        ok = ok and all(math.isfinite(float(v)) for v in fix.velocity_enu) and math.hypot(*fix.velocity_enu[:2]) < 2e3
    return bool(ok)


def run_fuzz(n: int, *, seed: int = 0, parser_every: int = 5_000, log=None) -> dict:
    """Fuzz ``n`` inputs; returns the report (see the module docstring). ``log(text)`` gets progress lines."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"the number of inputs must be an integer >= 1, got {n!r}")
    rng = random.Random(seed)
    kinds = rng.choices(KINDS, WEIGHTS, k=n)
    by_kind = Counter(kinds)
    escaped: Counter = Counter()
    escaped_examples: list[str] = []
    skips: Counter = Counter()
    totals: Counter = Counter()
    internal_examples: list[str] = []
    fixes = bad_fixes = 0
    parser_s = 0.0
    t_wall = time.perf_counter()
    parser = None
    tod = 0

    def close(p: NmeaParser) -> None:
        nonlocal fixes, bad_fixes, parser_s
        t = time.perf_counter()
        try:
            out = p.flush()
        except Exception as exc:  # noqa: BLE001 - what the fuzz counts
            escaped[type(exc).__name__] += 1
            out = []
        parser_s += time.perf_counter() - t
        fixes += len(out)
        bad_fixes += sum(not _check_fix(f) for f in out)
        c = p.counters
        skips.update(c.skips())
        for k in ("lines", "sentences", "parsed", "fixes", "internal_errors"):
            totals[k] += getattr(c, k)
        if c.internal_errors and len(internal_examples) < 5:
            internal_examples.append(c.last_skip)

    for i, kind in enumerate(kinds):
        if i % parser_every == 0:
            if parser is not None:
                close(parser)
            parser = NmeaParser(time_source=rng.choice(("gps", "host")), clock_ns=lambda: 1_700_000_000 * 10**9)
            if log is not None and i:
                log(f"{i} inputs, {sum(escaped.values())} escaped")
        tod = (tod + rng.choice((0, 1, 1, 1, 2, -1, 3600))) % 86_400
        data = make_input(rng, kind, tod)
        how = rng.random()
        t = time.perf_counter()
        try:
            if how < 0.5:
                out = parser.parse_line(data)
            else:
                if isinstance(data, str):
                    data = data.encode("utf-8", "surrogatepass")
                out = []
                pos = 0
                while pos < len(data):
                    step = rng.randrange(1, 64) if how < 0.75 else len(data)
                    out += parser.feed(data[pos:pos + step])
                    pos += step
        except Exception as exc:  # noqa: BLE001 - what the fuzz counts
            out = []
            escaped[type(exc).__name__] += 1
            if len(escaped_examples) < 5:
                escaped_examples.append(f"{type(exc).__name__}: {exc} <- {data[:120]!r}")
        parser_s += time.perf_counter() - t
        fixes += len(out)
        bad_fixes += sum(not _check_fix(f) for f in out)
    close(parser)
    wall_s = time.perf_counter() - t_wall
    return {
        "inputs": n,
        "seed": seed,
        "inputs_by_kind": dict(sorted(by_kind.items())),
        "escaped_exceptions": sum(escaped.values()),
        "escaped_by_type": dict(escaped),
        "escaped_examples": escaped_examples,
        "internal_errors": totals["internal_errors"],
        "internal_examples": internal_examples,
        "lines": totals["lines"],
        "sentences": totals["sentences"],
        "parsed": totals["parsed"],
        "fixes": fixes,
        "bad_fixes": bad_fixes,
        "skips_by_reason": dict(sorted(skips.items(), key=lambda kv: (-kv[1], kv[0]))),
        "parser_s": round(parser_s, 3),
        "wall_s": round(wall_s, 3),
        "inputs_per_s_parser": round(n / parser_s) if parser_s > 0 else None,
        "inputs_per_s_wall": round(n / wall_s) if wall_s > 0 else None,
    }


def format_report(r: dict) -> str:
    """The report as a text table."""
    rows = [
        ("inputs", f"{r['inputs']:,}"),
        ("  by kind", ", ".join(f"{k} {v:,}" for k, v in r["inputs_by_kind"].items())),
        ("escaped exceptions",
         f"{r['escaped_exceptions']}" + (f" {r['escaped_by_type']}" if r["escaped_by_type"] else "")),
        ("internal errors (caught)", f"{r['internal_errors']}"),
        ("lines / sentences / parsed", f"{r['lines']:,} / {r['sentences']:,} / {r['parsed']:,}"),
        ("fixes (bad)", f"{r['fixes']:,} ({r['bad_fixes']})"),
        ("parser time", f"{r['parser_s']:.1f} s ({r['inputs_per_s_parser'] or 0:,} inputs/s)"),
        ("wall time", f"{r['wall_s']:.1f} s with input generation ({r['inputs_per_s_wall'] or 0:,} inputs/s)"),
    ]
    w = max([len(k) for k, _ in rows] + [len(k) + 2 for k in r["skips_by_reason"]])
    lines = [f"{k:<{w}}  {v}" for k, v in rows]
    lines.append("counted skips by reason:")
    for k, v in r["skips_by_reason"].items():
        lines.append(f"  {k:<{w - 2}}  {v:>10,}")
    for ex in r["escaped_examples"] + r["internal_examples"]:
        lines.append(f"  example: {ex}")
    return "\n".join(lines)


__all__ = ["KINDS", "format_report", "make_input", "run_fuzz"]
