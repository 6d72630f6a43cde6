"""A grouped bar chart as PNG bytes, in pure Python (zlib + struct), for docs/performance.md.

    png = bar_chart([("big", [("vst", 512.3), ("restic", 140.0)]), ...], "Backup", "MB/s")

No matplotlib: the benchmark must not add a dependency for one picture. Text is drawn with
the embedded 5x7 bitmap font below, scaled up by whole pixels; the image is 8-bit RGB with
no filtering, which zlib still packs to a few kB because the picture is mostly flat colour.
"""

from __future__ import annotations

import math
import struct
import zlib
from collections.abc import Sequence

WIDTH, HEIGHT = 900, 500
WHITE = (255, 255, 255)
BLACK = (0, 0, 0)
GREY = (110, 110, 110)
GRID = (225, 225, 225)
# The same tool keeps its colour in every chart (matplotlib's "tab10" hues).
TOOL_COLOURS: dict[str, tuple[int, int, int]] = {
    "vst": (31, 119, 180),
    "restic": (255, 127, 14),
    "borg": (44, 160, 44),
    "git": (214, 39, 40),
}
OTHER_COLOURS = [(148, 103, 189), (140, 86, 75), (227, 119, 194), (127, 127, 127),
                 (188, 189, 34), (23, 190, 207)]
LEGEND_BOX = 14  # side of a legend's colour square, in pixels
# The plot area, inside the margins that hold the title, legend, tick and group labels.
LEFT, RIGHT, TOP, BOTTOM = 80, WIDTH - 20, 90, HEIGHT - 45

Colour = tuple[int, int, int]
Values = Sequence[tuple[str, float | None]]

# Glyphs of printable ASCII, 5 columns x 7 rows: "<char> <row> x 7", '#' = ink; g j p q y
# have 2 more rows, below the baseline.
_FONT_TEXT = r"""
  ..... ..... ..... ..... ..... ..... .....
! ..#.. ..#.. ..#.. ..#.. ..#.. ..... ..#..
" .#.#. .#.#. ..... ..... ..... ..... .....
# .#.#. .#.#. ##### .#.#. ##### .#.#. .#.#.
$ ..#.. .#### #.#.. .###. ..#.# ####. ..#..
% ##... ##..# ...#. ..#.. .#... #..## ...##
& .##.. #..#. #.#.. .#... #.#.# #..#. .##.#
' ..#.. ..#.. ..... ..... ..... ..... .....
( ...#. ..#.. .#... .#... .#... ..#.. ...#.
) .#... ..#.. ...#. ...#. ...#. ..#.. .#...
* ..... ..#.. #.#.# .###. #.#.# ..#.. .....
+ ..... ..#.. ..#.. ##### ..#.. ..#.. .....
, ..... ..... ..... ..... .##.. ..#.. .#...
- ..... ..... ..... ##### ..... ..... .....
. ..... ..... ..... ..... ..... .##.. .##..
/ ..... ....# ...#. ..#.. .#... #.... .....
0 .###. #...# #..## #.#.# ##..# #...# .###.
1 ..#.. .##.. ..#.. ..#.. ..#.. ..#.. .###.
2 .###. #...# ....# ...#. ..#.. .#... #####
3 ##### ...#. ..#.. ...#. ....# #...# .###.
4 ...#. ..##. .#.#. #..#. ##### ...#. ...#.
5 ##### #.... ####. ....# ....# #...# .###.
6 ..##. .#... #.... ####. #...# #...# .###.
7 ##### ....# ...#. ..#.. .#... .#... .#...
8 .###. #...# #...# .###. #...# #...# .###.
9 .###. #...# #...# .#### ....# ...#. .##..
: ..... .##.. .##.. ..... .##.. .##.. .....
; ..... .##.. .##.. ..... .##.. ..#.. .#...
< ...#. ..#.. .#... #.... .#... ..#.. ...#.
= ..... ..... ##### ..... ##### ..... .....
> .#... ..#.. ...#. ....# ...#. ..#.. .#...
? .###. #...# ....# ...#. ..#.. ..... ..#..
@ .###. #...# ....# .##.# #.#.# #.#.# .###.
A .###. #...# #...# ##### #...# #...# #...#
B ####. #...# #...# ####. #...# #...# ####.
C .###. #...# #.... #.... #.... #...# .###.
D ###.. #..#. #...# #...# #...# #..#. ###..
E ##### #.... #.... ####. #.... #.... #####
F ##### #.... #.... ####. #.... #.... #....
G .###. #...# #.... #.### #...# #...# .####
H #...# #...# #...# ##### #...# #...# #...#
I .###. ..#.. ..#.. ..#.. ..#.. ..#.. .###.
J ..### ...#. ...#. ...#. ...#. #..#. .##..
K #...# #..#. #.#.. ##... #.#.. #..#. #...#
L #.... #.... #.... #.... #.... #.... #####
M #...# ##.## #.#.# #.#.# #...# #...# #...#
N #...# #...# ##..# #.#.# #..## #...# #...#
O .###. #...# #...# #...# #...# #...# .###.
P ####. #...# #...# ####. #.... #.... #....
Q .###. #...# #...# #...# #.#.# #..#. .##.#
R ####. #...# #...# ####. #.#.. #..#. #...#
S .#### #.... #.... .###. ....# ....# ####.
T ##### ..#.. ..#.. ..#.. ..#.. ..#.. ..#..
U #...# #...# #...# #...# #...# #...# .###.
V #...# #...# #...# #...# #...# .#.#. ..#..
W #...# #...# #...# #.#.# #.#.# #.#.# .#.#.
X #...# #...# .#.#. ..#.. .#.#. #...# #...#
Y #...# #...# .#.#. ..#.. ..#.. ..#.. ..#..
Z ##### ....# ...#. ..#.. .#... #.... #####
[ .###. .#... .#... .#... .#... .#... .###.
\ ..... #.... .#... ..#.. ...#. ....# .....
] .###. ...#. ...#. ...#. ...#. ...#. .###.
^ ..#.. .#.#. #...# ..... ..... ..... .....
_ ..... ..... ..... ..... ..... ..... #####
` .#... ..#.. ..... ..... ..... ..... .....
a ..... ..... .###. ....# .#### #...# .####
b #.... #.... #.##. ##..# #...# #...# ####.
c ..... ..... .###. #.... #.... #...# .###.
d ....# ....# .##.# #..## #...# #...# .####
e ..... ..... .###. #...# ##### #.... .###.
f ..##. .#..# .#... ###.. .#... .#... .#...
g ..... ..... .#### #...# #...# #...# .#### ....# .###.
h #.... #.... #.##. ##..# #...# #...# #...#
i ..#.. ..... .##.. ..#.. ..#.. ..#.. .###.
j ...#. ..... ..##. ...#. ...#. ...#. ...#. #..#. .##..
k #.... #.... #..#. #.#.. ##... #.#.. #..#.
l .##.. ..#.. ..#.. ..#.. ..#.. ..#.. .###.
m ..... ..... ##.#. #.#.# #.#.# #...# #...#
n ..... ..... #.##. ##..# #...# #...# #...#
o ..... ..... .###. #...# #...# #...# .###.
p ..... ..... ####. #...# #...# #...# ####. #.... #....
q ..... ..... .#### #...# #...# #...# .#### ....# ....#
r ..... ..... #.##. ##..# #.... #.... #....
s ..... ..... .###. #.... .###. ....# ####.
t .#... .#... ###.. .#... .#... .#..# ..##.
u ..... ..... #...# #...# #...# #..## .##.#
v ..... ..... #...# #...# #...# .#.#. ..#..
w ..... ..... #...# #...# #.#.# #.#.# .#.#.
x ..... ..... #...# .#.#. ..#.. .#.#. #...#
y ..... ..... #...# #...# #...# #...# .#### ....# .###.
z ..... ..... ##### ...#. ..#.. .#... #####
{ ...#. ..#.. ..#.. .#... ..#.. ..#.. ...#.
| ..#.. ..#.. ..#.. ..#.. ..#.. ..#.. ..#..
} .#... ..#.. ..#.. ...#. ..#.. ..#.. .#...
~ ..... ..... .#... #.#.# ...#. ..... .....
"""
FONT: dict[str, list[str]] = {line[0]: line[2:].split()
                              for line in _FONT_TEXT.splitlines() if line}
GLYPH_W, GLYPH_H = 5, 7


class Canvas:
    """An RGB image in one bytearray, row after row, 3 bytes a pixel."""

    def __init__(self, width: int, height: int, background: Colour = WHITE) -> None:
        self.width, self.height = width, height
        self.pixels = bytearray(bytes(background) * (width * height))

    def rect(self, x0: int, y0: int, x1: int, y1: int, colour: Colour) -> None:
        """Fill [x0, x1) x [y0, y1), clipped to the image."""
        x0, x1 = max(0, x0), min(self.width, x1)
        y0, y1 = max(0, y0), min(self.height, y1)
        if x0 >= x1 or y0 >= y1:
            return
        run = bytes(colour) * (x1 - x0)
        for y in range(y0, y1):
            start = (y * self.width + x0) * 3
            self.pixels[start:start + len(run)] = run

    def text(self, x: int, y: int, s: str, colour: Colour = BLACK, scale: int = 2) -> None:
        """Draw `s` with its top left corner at (x, y); unknown characters show as '?'."""
        for i, char in enumerate(s):
            glyph = FONT.get(char, FONT["?"])
            left = x + i * (GLYPH_W + 1) * scale
            for row, bits in enumerate(glyph):
                for col, bit in enumerate(bits):
                    if bit == "#":
                        self.rect(left + col * scale, y + row * scale,
                                  left + (col + 1) * scale, y + (row + 1) * scale, colour)

    def centred_text(self, cx: int, y: int, s: str, colour: Colour = BLACK,
                     scale: int = 2) -> None:
        self.text(cx - text_width(s, scale) // 2, y, s, colour, scale)

    def png(self) -> bytes:
        # Filter type 0 (none) on every row: the flat colours compress well without it.
        stride = self.width * 3
        raw = b"".join(b"\0" + self.pixels[y * stride:(y + 1) * stride]
                       for y in range(self.height))
        header = struct.pack(">IIBBBBB", self.width, self.height, 8, 2, 0, 0, 0)  # 8-bit RGB
        return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header)
                + _chunk(b"IDAT", zlib.compress(raw, 9)) + _chunk(b"IEND", b""))


def _chunk(kind: bytes, data: bytes) -> bytes:
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data)))


def text_width(s: str, scale: int = 2) -> int:
    """Pixels from the first column of ink to the last (one blank column between glyphs)."""
    return max(0, len(s) * (GLYPH_W + 1) - 1) * scale


def number(value: float) -> str:
    """About three significant figures, with k/M/G/T for large values: '45.6', '1.23k'."""
    value = float(f"{value:.3g}")  # round first, so that 999.96 reads "1k", not "1e+03"
    magnitude = abs(value)
    for suffix, size in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if magnitude >= size:
            return f"{value / size:.3g}{suffix}" if magnitude < size * 1000 else f"{value:.2g}"
    return f"{value:.3g}"


def nice_ticks(top: float, count: int = 5) -> list[float]:
    """0 and multiples of 1, 2 or 5 x 10^k up to at least `top`, about `count` steps."""
    if not (math.isfinite(top) and top > 1e-300):  # log10 of a subnormal step fails
        top = 1.0
    raw = top / count
    power = 10.0 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    steps = math.ceil(top / step - 1e-9)
    return [i * step for i in range(steps + 1)]


def tool_colours(tools: Sequence[str]) -> dict[str, Colour]:
    """Known tools keep their colour; others take the free ones in turn."""
    free = [c for c in OTHER_COLOURS if c not in TOOL_COLOURS.values()]
    colours = {}
    for i, tool in enumerate(t for t in tools if t not in TOOL_COLOURS):
        colours[tool] = free[i % len(free)]
    return {t: TOOL_COLOURS.get(t) or colours[t] for t in tools}


def bar_chart(groups: Sequence[tuple[str, Values]], title: str, unit: str) -> bytes:
    """PNG bytes of one group of bars per data set and one bar per tool, each tool in its own
    colour, with a legend, the value above each bar and a y axis in `unit`.

    A value that is None, NaN or infinite (the tool failed) gives no bar and "n/a" instead;
    a tool a group does not list at all (no such step for it) leaves an empty place. Negative
    values print but draw no bar: the axis starts at 0. A group name too wide for its place
    is written smaller.
    """
    tools: list[str] = []
    for _, values in groups:
        tools += [tool for tool, _ in values if tool not in tools]
    colours = tool_colours(tools)
    top = max((v for _, values in groups for _, v in values
               if v is not None and math.isfinite(v) and v > 0), default=1.0)
    ticks = nice_ticks(top)
    if math.isfinite(ticks[-1]):
        top = ticks[-1]
    else:  # near the float maximum the next round number overflows
        ticks = [t for t in ticks if math.isfinite(t)]

    canvas = Canvas(WIDTH, HEIGHT)
    title_scale = 3 if text_width(title, 3) <= WIDTH - 20 else 2
    canvas.centred_text(WIDTH // 2, 12, title, scale=title_scale)
    _legend(canvas, tools, colours, y=50)
    _axis(canvas, ticks, top, unit)

    slot = (RIGHT - LEFT) / max(1, len(groups))
    bar_w = max(1, int(slot * 0.8 / max(1, len(tools))))
    # One size for every value and one for every group name: the largest that all fit.
    labels = [_label(v) for _, values in groups for _, v in values]
    value_scale = 2 if all(text_width(t, 2) <= bar_w + 4 for t in labels) else 1
    name_scale = 2 if all(text_width(n, 2) <= slot - 6 for n, _ in groups) else 1
    for g, (name, values) in enumerate(groups):
        by_tool = dict(values)
        x0 = LEFT + g * slot + (slot - bar_w * len(tools)) / 2
        for i, tool in enumerate(tools):
            if tool not in by_tool:
                continue
            left = round(x0 + i * bar_w)
            value = by_tool[tool]
            label = _label(value)
            height = 0
            if value is not None and math.isfinite(value):
                height = round(max(0.0, min(1.0, value / top)) * (BOTTOM - TOP))
                canvas.rect(left + 1, BOTTOM - height, left + bar_w - 1, BOTTOM, colours[tool])
            colour = BLACK if label != "n/a" else GREY
            canvas.centred_text(left + bar_w // 2, BOTTOM - height - 4 - GLYPH_H * value_scale,
                                label, colour, value_scale)
        canvas.centred_text(round(LEFT + (g + 0.5) * slot), BOTTOM + 12, name,
                            scale=name_scale)
    return canvas.png()


def _label(value: float | None) -> str:
    return number(value) if value is not None and math.isfinite(value) else "n/a"


def _legend(canvas: Canvas, tools: list[str], colours: dict[str, Colour], y: int) -> None:
    """One row, centred: a colour square and the tool's name per tool."""
    gap = 24
    widths = [LEGEND_BOX + 6 + text_width(t) for t in tools]
    x = (WIDTH - sum(widths) - gap * max(0, len(tools) - 1)) // 2
    for tool, width in zip(tools, widths, strict=True):
        canvas.rect(x, y, x + LEGEND_BOX, y + LEGEND_BOX, colours[tool])
        canvas.text(x + LEGEND_BOX + 6, y + (LEGEND_BOX - GLYPH_H * 2) // 2, tool)
        x += width + gap


def _axis(canvas: Canvas, ticks: list[float], top: float, unit: str) -> None:
    """Grid lines and labels at each tick, the y axis, the baseline and the unit above."""
    for tick in ticks:
        y = BOTTOM - round(tick / top * (BOTTOM - TOP))
        canvas.rect(LEFT, y, RIGHT, y + 1, GRID)
        canvas.rect(LEFT - 5, y, LEFT, y + 1, BLACK)
        label = number(tick)
        canvas.text(LEFT - 9 - text_width(label), y - GLYPH_H, label)
    canvas.rect(LEFT - 1, TOP - 8, LEFT, BOTTOM + 1, BLACK)
    canvas.rect(LEFT - 1, BOTTOM, RIGHT, BOTTOM + 1, BLACK)
    canvas.text(max(4, LEFT - text_width(unit) // 2), TOP - 26, unit)
