"""benches/chart.py on small fixed inputs: well-formed SVG, one bar per
(row, peer), bar lengths in proportion to the ratios of the inputs, and the
committed benches/chart.svg drawn from the numbers in benches/README.md.

    python3 -m unittest discover -s benches/tests -v
"""

import json
import subprocess
import sys
import tempfile
import unittest
import xml.etree.ElementTree as ET
from pathlib import Path

BENCHES = Path(__file__).resolve().parent.parent
SCRIPT = BENCHES / "chart.py"
NS = {"svg": "http://www.w3.org/2000/svg"}
PEERS = ["floor", "governor-keyed", "governor-best", "hashmap-gcra"]

# Two rows of summary's table; ratecard is 100 and 40 ns, so each peer's
# ratio is its own median / 100 or / 40.
SUMMARY = """\
Machine: 2 CPUs (`nproc`), test.

| benchmark | working set | mode | median ns | ÷ floor | ÷ governor keyed |
| --- | ---: | --- | ---: | ---: | ---: |
| decision/check/frontend/allowed | — | — | 57.9 | — | — |
| keyed/ratecard/u64 | 1000000 | latency | 100.0 | 2.00 | 0.50 |
| keyed/ratecard/ipv6 | 1 | back-to-back | 40.0 | 1.00 | 1.00 |
| floor/floor/u64 | 1000000 | latency | 50.0 | 1.00 | 0.25 |
| floor/floor/ipv6 | 1 | back-to-back | 40.0 | 1.00 | 1.00 |
| peers/governor-keyed/u64 | 1000000 | latency | 200.0 | 4.00 | 1.00 |
| peers/governor-keyed/ipv6 | 1 | back-to-back | 40.0 | 1.00 | 1.00 |
| peers/governor-best/u64 | 1000000 | latency | 150.0 | 3.00 | 0.75 |
| peers/governor-best/ipv6 | 1 | back-to-back | 30.0 | 0.75 | 0.75 |
| peers/hashmap-gcra/u64 | 1000000 | latency | 80.0 | 1.60 | 0.40 |
| peers/hashmap-gcra/ipv6 | 1 | back-to-back | 20.0 | 0.50 | 0.50 |
| contended/ratecard/one-key | 1 | 1-threads | 34.3 | — | 1.42 |
"""
RATIOS = {
    ("u64", "floor"): 0.5,
    ("u64", "governor-keyed"): 2.0,
    ("u64", "governor-best"): 1.5,
    ("u64", "hashmap-gcra"): 0.8,
    ("ipv6", "floor"): 1.0,
    ("ipv6", "governor-keyed"): 1.0,
    ("ipv6", "governor-best"): 0.75,
    ("ipv6", "hashmap-gcra"): 0.5,
}


def run(*args, stdin=None):
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
    )


def bars(svg_text):
    root = ET.fromstring(svg_text)  # raises on malformed XML
    assert root.tag == "{http://www.w3.org/2000/svg}svg", root.tag
    return root.findall(".//svg:rect[@class='bar']", NS)


def key_of(bar):
    """The key kind of a bar's row label, e.g. 'u64, 1M keys, latency'."""
    first = bar.get("data-row").split(",")[0]
    return {"u64": "u64", "IPv6": "ipv6"}[first]


class ChartFromSummary(unittest.TestCase):
    def setUp(self):
        out = run("-", "--rows", "all", stdin=SUMMARY)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.svg = out.stdout
        self.bars = bars(self.svg)

    def test_one_bar_per_row_and_peer(self):
        got = sorted((key_of(b), b.get("data-peer")) for b in self.bars)
        self.assertEqual(got, sorted(RATIOS))

    def test_bar_ratio_is_peer_median_over_ratecard_median(self):
        for b in self.bars:
            want = RATIOS[(key_of(b), b.get("data-peer"))]
            self.assertAlmostEqual(float(b.get("data-ratio")), want, places=4)

    def test_bar_length_is_proportional_to_its_ratio(self):
        scale = {float(b.get("width")) / float(b.get("data-ratio")) for b in self.bars}
        self.assertLess(max(scale) - min(scale), 0.01, scale)

    def test_ratecard_line_is_where_a_ratio_of_one_ends(self):
        root = ET.fromstring(self.svg)
        line = root.find(".//svg:line[@class='one']", NS)
        b = self.bars[0]
        one = float(b.get("x")) + float(b.get("width")) / float(b.get("data-ratio"))
        self.assertAlmostEqual(float(line.get("x1")), one, delta=0.2)

    def test_rows_are_labelled_with_ratecard_median(self):
        texts = [t.text for t in ET.fromstring(self.svg).iter("{http://www.w3.org/2000/svg}text")]
        self.assertIn("u64, 1M keys, latency", texts)
        self.assertIn("IPv6, 1 key, back-to-back", texts)
        self.assertIn("ratecard 100.0 ns", texts)
        self.assertIn("ratecard 40.0 ns", texts)

    def test_contended_and_decision_rows_are_not_charted(self):
        self.assertEqual(len({b.get("data-row") for b in self.bars}), 2)


class ChartFromCriterion(unittest.TestCase):
    def write(self, root, group, function, value, median):
        d = Path(root, group, function.replace("/", "_"), value, "new")
        d.mkdir(parents=True)
        (d / "benchmark.json").write_text(json.dumps({
            "group_id": group, "function_id": function, "value_str": value,
            "full_id": f"{group}/{function}/{value}", "throughput": None,
        }))
        (d / "estimates.json").write_text(json.dumps({
            "mean": {"point_estimate": median * 2},
            "median": {"point_estimate": median},
        }))

    def test_criterion_directory_gives_the_same_chart_as_summary_table(self):
        with tempfile.TemporaryDirectory() as tmp:
            for line in SUMMARY.splitlines():
                cells = [c.strip() for c in line.strip("|").split("|")]
                parts = cells[0].split("/")
                if len(parts) == 3 and cells[1] != "—":
                    # criterion keeps more digits than summary prints.
                    self.write(tmp, parts[0], f"{parts[1]}/{parts[2]}/{cells[2]}", cells[1],
                               float(cells[3]) + 0.02)
            from_dir = run(tmp, "--rows", "all")
        from_table = run("-", "--rows", "all", stdin=SUMMARY)
        self.assertEqual(from_dir.returncode, 0, from_dir.stderr)
        self.assertEqual(len(bars(from_dir.stdout)), 8)
        self.assertEqual(from_dir.stdout, from_table.stdout)

    def test_missing_peer_has_no_bar_and_says_not_run(self):
        with tempfile.TemporaryDirectory() as tmp:
            self.write(tmp, "keyed", "ratecard/u64/latency", "1000000", 100.0)
            self.write(tmp, "peers", "governor-keyed/u64/latency", "1000000", 150.0)
            out = run(tmp)
        self.assertEqual(out.returncode, 0, out.stderr)
        got = [(b.get("data-peer"), float(b.get("data-ratio"))) for b in bars(out.stdout)]
        self.assertEqual(got, [("governor-keyed", 1.5)])
        self.assertEqual(out.stdout.count("not run"), 3)

    def test_no_results_is_an_error(self):
        with tempfile.TemporaryDirectory() as tmp:
            out = run(tmp)
        self.assertNotEqual(out.returncode, 0)
        self.assertIn("no keyed ratecard benchmark", out.stderr)


class CommittedChart(unittest.TestCase):
    def test_readme_rows_one_bar_per_peer(self):
        svg = (BENCHES / "chart.svg").read_text(encoding="utf-8")
        got = sorted((b.get("data-row"), b.get("data-peer")) for b in bars(svg))
        rows = ["u64, 1 key, back-to-back", "u64, 10 000 keys, back-to-back",
                "u64, 1M keys, latency", "IPv6, 1M keys, latency",
                "48-byte key, 1M keys, latency"]
        self.assertEqual(got, sorted((r, p) for r in rows for p in PEERS))

    def test_committed_chart_is_drawn_from_benches_readme(self):
        out = run(str(BENCHES / "README.md"))
        self.assertEqual(out.returncode, 0, out.stderr)
        committed = (BENCHES / "chart.svg").read_text(encoding="utf-8")
        self.assertTrue(
            out.stdout == committed,
            "benches/chart.svg is stale: python3 benches/chart.py benches/README.md"
            " -o benches/chart.svg",
        )


if __name__ == "__main__":
    unittest.main()
