#!/usr/bin/env python3
"""Draw the keyed-check benchmarks as an SVG bar chart of ratios to ratecard.

For each benchmark row (key kind, working set, mode) one bar per peer: the
peer's median time per check divided by ratecard's, so ratecard is 1.0 and a
bar past 1.0 is a peer slower than ratecard. Peers: the floor, governor's
default keyed limiter, governor's best configuration, HashMap + GCRA.

Input, either of:
  - criterion's results directory (target/criterion: each benchmark's
    new/benchmark.json and new/estimates.json, as `summary` reads them);
  - a file holding the markdown table `cargo run -p ratecard-benches --bin
    summary` prints (benches/README.md holds the latest one), '-' for stdin.
Medians are rounded to 0.1 ns as `summary` prints them, so both inputs of
one run draw the same chart.

  python3 benches/chart.py benches/README.md -o benches/chart.svg
  python3 benches/chart.py target/criterion -o benches/chart.svg --rows all

Python 3.11, standard library only.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

# Benchmark ids `<group>/<who>/<key>` with a working set and a mode.
GROUPS = {"keyed", "floor", "peers"}
SUBJECT = "ratecard"
# (criterion name, legend, colour): Okabe-Ito hues, legible on light and dark.
PEERS = [
    ("floor", "floor (hash + one 16-byte CAS)", "#8c8c8c"),
    ("governor-keyed", "governor keyed (default)", "#e69f00"),
    ("governor-best", "governor best (ahash, fake clock)", "#d55e00"),
    ("hashmap-gcra", "HashMap + GCRA (one thread, no lock)", "#56b4e9"),
]
KEY_ORDER = ["u64", "ipv6", "secret48"]
KEY_NAMES = {"u64": "u64", "ipv6": "IPv6", "secret48": "48-byte key"}
# The rows of the README's performance table.
README_ROWS = [
    ("u64", "1", "back-to-back"),
    ("u64", "10000", "back-to-back"),
    ("u64", "1000000", "latency"),
    ("ipv6", "1000000", "latency"),
    ("secret48", "1000000", "latency"),
]

Row = tuple[str, str, str]  # key, working set, mode


@dataclass(frozen=True)
class Bar:
    row: Row
    peer: str
    peer_ns: float
    ratecard_ns: float

    @property
    def ratio(self) -> float:
        return self.peer_ns / self.ratecard_ns


class InputError(Exception):
    pass


def _put(medians: dict, who: str, row: Row, ns: float, where: str) -> None:
    old = medians.get((who, row))
    if old is not None and old != ns:
        raise InputError(f"{where}: {who} {' '.join(row)} is both {old} and {ns} ns")
    medians[(who, row)] = ns


def read_criterion(directory: Path) -> dict:
    """Medians by (who, row) from criterion's new/{benchmark,estimates}.json."""
    medians: dict = {}
    for meta_path in sorted(directory.glob("**/new/benchmark.json")):
        try:
            meta = json.loads(meta_path.read_text())
            est = json.loads((meta_path.parent / "estimates.json").read_text())
            group, function = meta["group_id"], meta["function_id"]
            value = meta.get("value_str")
            ns = float(est["median"]["point_estimate"])
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise InputError(f"{meta_path.parent}: {e}") from e
        parts = function.split("/") if isinstance(function, str) else []
        if group not in GROUPS or value is None or len(parts) != 3:
            continue
        who, key, mode = parts
        _put(medians, who, (key, value, mode), round(ns, 1), str(meta_path.parent))
    return medians


def read_summary(text: str, where: str) -> dict:
    """Medians by (who, row) from summary's markdown table (other lines ignored)."""
    medians: dict = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not line.lstrip().startswith("|") or len(cells) < 4:
            continue
        parts = cells[0].split("/")
        if len(parts) != 3 or parts[0] not in GROUPS:
            continue
        try:
            ns = float(cells[3])
        except ValueError:
            continue
        _, who, key = parts
        _put(medians, who, (key, cells[1], cells[2]), ns, where)
    return medians


def select_rows(medians: dict, which: str) -> list[Row]:
    have = [row for (who, row) in medians if who == SUBJECT]
    if which == "readme":
        return [row for row in README_ROWS if row in have]

    def order(row: Row):
        key, ws, mode = row
        k = KEY_ORDER.index(key) if key in KEY_ORDER else len(KEY_ORDER)
        return (k, key, int(ws) if ws.isdigit() else math.inf, mode)

    return sorted(set(have), key=order)


def bars_for(medians: dict, rows: list[Row]) -> list[Bar]:
    bars = []
    for row in rows:
        base = medians[(SUBJECT, row)]
        if base <= 0:
            raise InputError(f"ratecard {' '.join(row)}: median {base} ns")
        for peer, _, _ in PEERS:
            ns = medians.get((peer, row))
            if ns is not None:
                bars.append(Bar(row, peer, ns, base))
    return bars


def row_label(row: Row) -> str:
    key, ws, mode = row
    if ws.isdigit():
        n = int(ws)
        if n >= 1_000_000 and n % 1_000_000 == 0:
            size = f"{n // 1_000_000}M keys"
        else:
            size = f"{n:,} key{'s' if n != 1 else ''}".replace(",", " ")
    else:
        size = ws
    return f"{KEY_NAMES.get(key, key)}, {size}, {mode}"


# Layout, in px.
WIDTH = 820
RIGHT = 60  # room for the last value label
TOP = 124  # title, subtitle, legend, the 1.0 label
BAR_H = 13
BAR_GAP = 3
ROW_GAP = 20
FOOT = 54  # axis ticks and axis title
FONT = "system-ui, -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif"
STYLE = f"""
svg {{ --bg: #ffffff; --fg: #1f2328; --muted: #59636e; --grid: #d1d9e0; }}
@media (prefers-color-scheme: dark) {{
  svg {{ --bg: #0d1117; --fg: #e6edf3; --muted: #9198a1; --grid: #3d444d; }}
}}
text {{ font-family: {FONT}; fill: var(--fg); }}
.bg {{ fill: var(--bg); }}
.muted {{ fill: var(--muted); }}
.grid {{ stroke: var(--grid); stroke-width: 1; }}
.axis {{ stroke: var(--muted); stroke-width: 1; }}
.one {{ stroke: var(--fg); stroke-width: 2; stroke-dasharray: 6 3; }}
"""


def nice_max(ratios: list[float]) -> float:
    top = max([1.0, *ratios])
    return max(1.5, math.ceil(top * 1.05 / 0.5) * 0.5)


def render(bars: list[Bar], rows: list[Row], caption: str) -> ET.Element:
    peers = [p for p, _, _ in PEERS]
    group_h = len(peers) * BAR_H + (len(peers) - 1) * BAR_GAP
    plot_h = len(rows) * group_h + (len(rows) + 1) * ROW_GAP
    height = TOP + plot_h + FOOT
    # Row labels are 12 px bold: about 7.5 px a character.
    left = max(160, 26 + round(7.5 * max((len(row_label(r)) for r in rows), default=0)))
    plot_w = WIDTH - left - RIGHT
    xmax = nice_max([b.ratio for b in bars])

    def x(ratio: float) -> float:
        return left + plot_w * ratio / xmax

    svg = ET.Element(
        "svg",
        {
            "xmlns": "http://www.w3.org/2000/svg",
            "width": str(WIDTH),
            "height": str(height),
            "viewBox": f"0 0 {WIDTH} {height}",
            "role": "img",
            "aria-labelledby": "title",
        },
    )
    ET.SubElement(svg, "title", {"id": "title"}).text = (
        "ratecard check_key against its peers: each peer's time per check ÷ ratecard's"
    )
    ET.SubElement(svg, "style").text = STYLE
    ET.SubElement(svg, "rect", {"class": "bg", "width": "100%", "height": "100%", "rx": "6"})

    def text(x_: float, y_: float, s: str, **attrs: str) -> ET.Element:
        t = ET.SubElement(svg, "text", {"x": f"{x_:.1f}", "y": f"{y_:.1f}", **attrs})
        t.text = s
        return t

    text(16, 26, "check_key: time per check of each peer ÷ ratecard's", **{
        "font-size": "16", "font-weight": "600"})
    text(16, 46, "ratecard = 1.0 (dashed line); a bar past it is a peer slower than ratecard,"
         " a bar short of it a faster one", **{"font-size": "12", "class": "muted"})

    # Legend: two columns of two.
    for i, (_, name, colour) in enumerate(PEERS):
        lx = 16 + (i % 2) * 300
        ly = 62 + (i // 2) * 17
        ET.SubElement(svg, "rect", {"x": str(lx), "y": str(ly), "width": "12", "height": "12",
                                    "rx": "2", "fill": colour})
        text(lx + 18, ly + 10.5, name, **{"font-size": "12"})

    # Grid and ticks every 0.5.
    plot_top, plot_bottom = TOP, TOP + plot_h
    steps = round(xmax / 0.5)
    for i in range(steps + 1):
        r = i * 0.5
        gx = x(r)
        ET.SubElement(svg, "line", {"class": "grid" if i else "axis", "x1": f"{gx:.1f}",
                                    "y1": str(plot_top), "x2": f"{gx:.1f}",
                                    "y2": str(plot_bottom)})
        text(gx, plot_bottom + 16, f"{r:.1f}", **{"font-size": "11", "text-anchor": "middle",
                                                  "class": "muted"})
    text(left + plot_w / 2, plot_bottom + 34, "peer's median ÷ ratecard's median (time per check)",
         **{"font-size": "12", "text-anchor": "middle", "class": "muted"})

    by_key = {(b.row, b.peer): b for b in bars}
    for ri, row in enumerate(rows):
        gy = plot_top + ROW_GAP + ri * (group_h + ROW_GAP)
        base = next((b.ratecard_ns for b in bars if b.row == row), None)
        label = text(left - 10, gy + group_h / 2 - 2, row_label(row),
                     **{"font-size": "12", "text-anchor": "end", "font-weight": "600"})
        label.set("class", "row")
        if base is not None:
            text(left - 10, gy + group_h / 2 + 13, f"ratecard {base:.1f} ns",
                 **{"font-size": "11", "text-anchor": "end", "class": "muted"})
        for pi, (peer, name, colour) in enumerate(PEERS):
            by = gy + pi * (BAR_H + BAR_GAP)
            b = by_key.get((row, peer))
            if b is None:
                text(left + 4, by + BAR_H - 2, f"{name.split(' (')[0]}: not run",
                     **{"font-size": "10", "class": "muted"})
                continue
            rect = ET.SubElement(svg, "rect", {
                "class": "bar", "x": str(left), "y": f"{by:.1f}",
                "width": f"{x(b.ratio) - left:.2f}", "height": str(BAR_H), "fill": colour,
                "data-row": row_label(row), "data-peer": peer, "data-ratio": f"{b.ratio:.4f}",
            })
            ET.SubElement(rect, "title").text = (
                f"{name}: {b.peer_ns:.1f} ns, ratecard {b.ratecard_ns:.1f} ns: ×{b.ratio:.2f}"
            )
            text(x(b.ratio) + 4, by + BAR_H - 2.5, f"{b.ratio:.2f}", **{"font-size": "10.5"})

    # ratecard's 1.0 on top of the bars.
    ET.SubElement(svg, "line", {"class": "one", "x1": f"{x(1.0):.1f}", "y1": str(plot_top - 6),
                                "x2": f"{x(1.0):.1f}", "y2": str(plot_bottom)})
    text(x(1.0), plot_top - 10, "ratecard = 1.0", **{"font-size": "11", "text-anchor": "middle",
                                                     "font-weight": "600"})
    text(x(1.0) - 52, plot_top - 10, "← peer faster", **{"font-size": "11", "text-anchor": "end",
                                                         "class": "muted"})
    text(x(1.0) + 52, plot_top - 10, "peer slower →", **{"font-size": "11", "class": "muted"})
    text(16, height - 8, caption, **{"font-size": "11", "class": "muted"})
    return svg


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("input", nargs="?", default=None,
                    help="criterion directory, or a file with summary's table ('-': stdin);"
                         " default: the workspace's target/criterion")
    ap.add_argument("-o", "--output", help="SVG file to write (default: stdout)")
    ap.add_argument("--rows", choices=["readme", "all"], default="readme",
                    help="the README's five rows (default) or every keyed row")
    ap.add_argument("--caption", default="criterion medians, peers in the same run:"
                    " benches/README.md has the numbers, the machine and the method")
    args = ap.parse_args(argv)

    source = args.input or str(Path(__file__).resolve().parent.parent / "target" / "criterion")
    try:
        if source == "-":
            medians = read_summary(sys.stdin.read(), "stdin")
        elif Path(source).is_dir():
            medians = read_criterion(Path(source))
        else:
            medians = read_summary(Path(source).read_text(encoding="utf-8"), source)
        rows = select_rows(medians, args.rows)
        if not rows:
            raise InputError(f"{source}: no keyed ratecard benchmark found"
                             " (run cargo bench -p ratecard-benches first)")
        bars = bars_for(medians, rows)
    except (InputError, OSError) as e:
        print(f"chart.py: {e}", file=sys.stderr)
        return 1

    svg = render(bars, rows, args.caption)
    ET.indent(svg)
    out = ET.tostring(svg, encoding="unicode") + "\n"
    if args.output:
        Path(args.output).write_text(out, encoding="utf-8")
    else:
        sys.stdout.write(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
