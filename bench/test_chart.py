"""The benchmark's PNG chart (bench/chart.py) and `python -m bench.run --chart`. Fast: no
benchmark runs, the charts are of made-up figures.

    .venv/bin/pytest -q bench/test_chart.py
"""

from __future__ import annotations

import struct
import subprocess
import sys
import zlib
from collections import Counter
from pathlib import Path

import pytest

from bench import chart, run

Colour = tuple[int, int, int]
FIGURES = [("big", [("vst", 412.5), ("restic", 143.2), ("borg", 287.9), ("git", 38.4)]),
           ("text", [("vst", 355.0), ("restic", 97.1), ("borg", 20.0), ("git", 61.7)])]


def decode(png: bytes) -> tuple[int, int, list[list[Colour]]]:
    """Width, height and rows of pixels of an 8-bit RGB PNG with unfiltered rows, checking
    the signature, each chunk's CRC and the size of the image data."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, []
    while pos < len(png):
        (length,) = struct.unpack(">I", png[pos:pos + 4])
        kind, data = png[pos + 4:pos + 8], png[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", png[pos + 8 + length:pos + 12 + length])
        assert crc == zlib.crc32(kind + data), kind
        chunks.append((kind, data))
        pos += 12 + length
    assert pos == len(png)
    assert chunks[0][0] == b"IHDR" and chunks[-1] == (b"IEND", b"")
    width, height, depth, colour_type, _, _, interlace = struct.unpack(">IIBBBBB", chunks[0][1])
    assert (depth, colour_type, interlace) == (8, 2, 0)
    raw = zlib.decompress(b"".join(d for k, d in chunks if k == b"IDAT"))
    stride = 1 + 3 * width
    assert len(raw) == height * stride
    rows = []
    for y in range(height):
        line = raw[y * stride:(y + 1) * stride]
        assert line[0] == 0  # filter type none: all this decoder knows
        rows.append([(line[i], line[i + 1], line[i + 2]) for i in range(1, stride, 3)])
    return width, height, rows


def tallest_column(rows: list[list[Colour]], colour: Colour) -> int:
    """The most pixels of `colour` in one column of the plot area (below the legend)."""
    counts: Counter[int] = Counter(x for row in rows[chart.TOP:] for x, c in enumerate(row)
                                   if c == colour)
    return max(counts.values(), default=0)


def test_png_is_valid_and_about_900_by_500() -> None:
    width, height, rows = decode(chart.bar_chart(FIGURES, "Throughput", "MB/s"))
    assert (width, height) == (chart.WIDTH, chart.HEIGHT) == (900, 500)
    assert rows[0][0] == chart.WHITE
    assert any(c == chart.BLACK for row in rows for c in row)  # text and axes are drawn


def test_bars_scale_with_their_values() -> None:
    _, _, rows = decode(chart.bar_chart([("big", [("vst", 100.0), ("restic", 400.0)])],
                                        "t", "MB/s"))
    vst = tallest_column(rows, chart.TOOL_COLOURS["vst"])
    restic = tallest_column(rows, chart.TOOL_COLOURS["restic"])
    assert restic == chart.BOTTOM - chart.TOP  # the tallest bar fills the plot
    assert restic == pytest.approx(4 * vst, rel=0.02)


def test_each_tool_has_its_colour_in_the_legend_and_bars() -> None:
    _, _, rows = decode(chart.bar_chart([*FIGURES, ("tree", [("vst-plain", 5.0)])], "t", "u"))
    seen = {c for row in rows for c in row}
    assert set(chart.TOOL_COLOURS.values()) <= seen
    other = chart.tool_colours(["vst", "vst-plain"])["vst-plain"]
    assert other in seen and other not in chart.TOOL_COLOURS.values()


@pytest.mark.parametrize("missing", [None, float("nan"), float("inf")])
def test_missing_value_draws_no_bar(missing: float | None) -> None:
    _, _, rows = decode(chart.bar_chart(
        [("big", [("vst", 50.0), ("borg", missing)]), ("text", [("vst", 60.0)])], "t", "MB/s"))
    borg = chart.TOOL_COLOURS["borg"]
    # Only the legend's square is in borg's colour.
    assert sum(c == borg for row in rows for c in row) == chart.LEGEND_BOX ** 2


@pytest.mark.parametrize("values", [
    [0.0, 0.0], [-5.0, 3.0], [-1.0, -2.0], [1e300, 1.0], [sys.float_info.max, 2.0],
    [5e-324, 1e-310], [0.001, 0.0004], [999.96, 1e15],
])
def test_odd_values_do_not_crash(values: list[float]) -> None:
    groups = [("big", [("vst", values[0]), ("git", values[1])])]
    width, height, _ = decode(chart.bar_chart(groups, "t" * 200, "MB/s"))
    assert (width, height) == (900, 500)


def test_no_groups_and_many_groups() -> None:
    decode(chart.bar_chart([], "", ""))
    many = [(f"d{i}", [(f"tool{j}", float(i * j)) for j in range(12)]) for i in range(40)]
    decode(chart.bar_chart(many, "many", "MB/s"))


def test_number_labels() -> None:
    assert [chart.number(v) for v in (0, 9.87, 45.64, 412.5, 999.96, 1234, 2.5e6, -3)] == [
        "0", "9.87", "45.6", "412", "1k", "1.23k", "2.5M", "-3"]


def test_ticks_are_round_and_cover_the_top() -> None:
    assert chart.nice_ticks(412.5) == [0, 100, 200, 300, 400, 500]
    assert chart.nice_ticks(0.0) == [0, 0.2, 0.4, 0.6000000000000001, 0.8, 1.0]
    ticks = chart.nice_ticks(7.3)
    assert ticks[0] == 0 and ticks[-1] >= 7.3 and 3 <= len(ticks) <= 11


def test_run_groups_results_and_marks_failures() -> None:
    results = [run.Result("big", "vst", 200_000_000, wall_s=2.0),
               run.Result("big", "borg", 200_000_000, error="borg: not installed"),
               run.Result("text", "vst", 100_000_000, wall_s=4.0)]
    assert run.throughput_groups(results) == [("big", [("vst", 100.0), ("borg", None)]),
                                              ("text", [("vst", 25.0)])]


def test_run_help_shows_chart() -> None:
    out = subprocess.run([sys.executable, "-m", "bench.run", "--help"], check=True,
                         capture_output=True, text=True, cwd=Path(__file__).parent.parent).stdout
    assert "--chart PNG" in out


def test_a_tool_a_group_does_not_list_leaves_no_n_a() -> None:
    """git has no restore step: its place in the restore group stays empty, whereas a tool
    that failed shows "n/a" in grey."""
    def grey_pixels(groups: list[tuple[str, list[tuple[str, float | None]]]]) -> int:
        _, _, rows = decode(chart.bar_chart(groups, "t", "MB/s"))
        return sum(c == chart.GREY for row in rows[chart.TOP:chart.BOTTOM] for c in row)

    backup = ("big backup", [("vst", 400.0), ("git", 30.0)])
    assert grey_pixels([backup, ("big restore", [("vst", 800.0)])]) == 0
    assert grey_pixels([backup, ("big restore", [("vst", 800.0), ("git", None)])]) > 0


def test_workflow_groups_backups_and_restores_per_data_set() -> None:
    from bench import workflow

    def row(dataset: str, step: str, tool: str, action: str, error: str = ""
            ) -> workflow.Row:
        return workflow.Row(dataset, step, tool, action, "cold", 100 * workflow.MB, 1.0,
                            error=error)

    rows = [row("tree", "first", "vst", "commit"), row("big", "first", "vst", "commit"),
            row("big", "first", "restic", "backup", error="failed"),
            row("big", "restore", "vst", "clone"), row("big", "restore", "vst", "restore --to"),
            row("big", "unchanged", "vst", "status")]
    assert workflow.throughput_groups(rows) == [
        ("big backup", [("vst", 100.0), ("restic", None)]),
        ("big restore", [("vst", 100.0)]),  # the clone: restore --to is in the table
        ("tree backup", [("vst", 100.0)])]
