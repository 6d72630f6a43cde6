"""Deterministic benchmark data sets, generated once into a cache directory.

Every byte comes from BLAKE3 in XOF mode under a fixed key (over 1 GB/s, byte-identical on
every run and machine), or from `random.Random` with a fixed integer seed for structure (sizes,
names, the text vocabulary). Bump GENERATOR_VERSION whenever the output changes: a data set is
regenerated when its marker file is missing or names another version.
"""

from __future__ import annotations

import itertools
import math
import os
import random
import shutil
import sys
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from blake3 import blake3

GENERATOR_VERSION = "1"
DEFAULT_ROOT = Path("/var/tmp/vst-bench")
NAMES = ("big", "text", "tree")

MiB = 1 << 20
GiB = 1 << 30
BIG_BYTES = 1 * GiB
TEXT_BYTES = 512 * MiB
TREE_FILES = 50_000
TREE_MEDIAN_BYTES = 8 * 1024
# sigma of ln(size): mean = median * exp(sigma^2 / 2) = 10 KiB, so 50,000 files make ~500 MiB.
TREE_SIGMA = 0.67
TREE_DUPLICATE_SHARE = 0.10
TREE_TEXT_SHARE = 0.5
TREE_FANOUT = (4, 5, 5)  # 4 + 20 + 100 = 124 directories, three levels deep
WRITE_CHUNK = 16 * MiB


@dataclass(frozen=True)
class Dataset:
    name: str
    path: Path
    nbytes: int  # logical bytes: the file's size, or the sum of a tree's file sizes


def bench_root() -> Path:
    """The benchmark's working area: data cache, repositories, scratch files."""
    return Path(os.environ.get("VST_BENCH_DIR", DEFAULT_ROOT))


def data_dir(scale: float) -> Path:
    return bench_root() / "data" / f"scale-{scale:g}"


def ensure(name: str, scale: float = 1.0) -> Dataset:
    """Return data set `name` at `scale`, generating it first if it is missing or stale."""
    directory = data_dir(scale)
    generate, filename = _GENERATORS[name]
    path = directory / filename
    marker = directory / f".{filename}.ok"
    if not (path.exists() and marker.exists() and marker.read_text() == GENERATOR_VERSION):
        directory.mkdir(parents=True, exist_ok=True)
        marker.unlink(missing_ok=True)
        print(f"generating {path} ...", file=sys.stderr, flush=True)
        # Build under a temporary name so an interrupted run never leaves a half data set
        # that looks complete.
        scratch = directory / f".{filename}.tmp"
        _remove(scratch)
        generate(scratch, scale)
        _remove(path)
        scratch.rename(path)
        marker.write_text(GENERATOR_VERSION)
    return Dataset(name, path, _logical_size(path))


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _logical_size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


# --- byte streams ---------------------------------------------------------------------------


def random_chunks(key: str, chunk: int = WRITE_CHUNK) -> Iterator[bytes]:
    """Endless incompressible bytes: BLAKE3's extendable output under `key`."""
    xof = blake3(key.encode())
    offset = 0
    while True:
        yield xof.digest(length=chunk, seek=offset)
        offset += chunk


def text_chunks(key: str, chunk: int = WRITE_CHUNK) -> Iterator[bytes]:
    """Endless log-like text: each pair of random bytes picks one of 65,536 tokens.

    A token is a phrase of one to three words drawn from a Zipf-weighted vocabulary, a number,
    or a newline followed by a timestamp and log level. The token sequence is random, so the
    text has no repeating period (content-defined chunking finds no false duplicates), yet
    zstd level 3 compresses it about 4x, like real logs and source.
    """
    tokens = _text_tokens()
    # A token averages ~12 bytes per 2 random bytes, so this yields chunks of about `chunk`.
    for raw in random_chunks(key, max(64, chunk // 6) & ~1):
        indexes = array("H", raw)
        if sys.byteorder == "big":
            indexes.byteswap()  # the same bytes on every machine
        yield b"".join(map(tokens.__getitem__, indexes))


@cache
def _text_tokens() -> list[bytes]:
    rng = random.Random(20240601)
    syllables = ["al", "be", "con", "de", "ed", "er", "fi", "ga", "ho", "in", "ing", "ion", "ix",
                 "ju", "ka", "lo", "ment", "mi", "ne", "pre", "qu", "ru", "sel", "sta", "ten",
                 "tr", "un", "vor", "wo", "za"]
    vocabulary: set[str] = set()
    while len(vocabulary) < 8000:
        vocabulary.add("".join(rng.choices(syllables, k=rng.randint(1, 4))))
    words = sorted(vocabulary)
    rng.shuffle(words)
    zipf = list(itertools.accumulate(1 / rank for rank in range(1, len(words) + 1)))
    tokens = [
        " ".join(rng.choices(words, cum_weights=zipf, k=rng.randint(1, 3))).encode() + b" "
        for _ in range(60_000)
    ]
    tokens += [b"%d " % rng.randrange(100_000) for _ in range(3_000)]
    levels = (b"DEBUG", b"INFO", b"WARN", b"ERROR")
    while len(tokens) < 65_536:
        stamp = (rng.randint(1, 12), rng.randint(1, 28), rng.randrange(24), rng.randrange(60))
        tokens.append(b"\n2024-%02d-%02d %02d:%02d " % stamp + rng.choice(levels) + b" ")
    rng.shuffle(tokens)
    return tokens


def _write_stream(path: Path, chunks: Iterator[bytes], size: int) -> None:
    with open(path, "wb") as f:
        remaining = size
        for chunk in chunks:
            if remaining <= 0:
                break
            f.write(chunk[:remaining])
            remaining -= len(chunk)


# --- the data sets --------------------------------------------------------------------------


def _generate_big(path: Path, scale: float) -> None:
    _write_stream(path, random_chunks("big.bin"), round(BIG_BYTES * scale))


def _generate_text(path: Path, scale: float) -> None:
    _write_stream(path, text_chunks("text.txt"), round(TEXT_BYTES * scale))


def _generate_tree(path: Path, scale: float) -> None:
    """Files of log-normal sizes spread over a fixed directory layout; some exact duplicates.

    The scale changes the number of files, not their sizes or the directories, so a small
    run still has realistic small files.
    """
    rng = random.Random(50_000)
    directories = _tree_directories(path)
    for directory in directories:
        directory.mkdir(parents=True, exist_ok=True)
    specs: list[tuple[str, str, int]] = []  # (kind, content key, size): equal specs, equal bytes
    for i in range(max(1, round(TREE_FILES * scale))):
        if specs and rng.random() < TREE_DUPLICATE_SHARE:
            spec = rng.choice(specs)
        else:
            kind = "txt" if rng.random() < TREE_TEXT_SHARE else "bin"
            size = max(1, round(rng.lognormvariate(math.log(TREE_MEDIAN_BYTES), TREE_SIGMA)))
            spec = (kind, f"tree/{i}", size)
        specs.append(spec)
        kind, key, size = spec
        chunks = text_chunks(key, size) if kind == "txt" else random_chunks(key, size)
        _write_stream(rng.choice(directories) / f"f{i:05d}.{kind}", chunks, size)


def _tree_directories(root: Path) -> list[Path]:
    """a0/, a0/b0/, a0/b0/c0/, ...: every directory of the TREE_FANOUT layout."""
    level = [root]
    every: list[Path] = []
    for depth, fanout in enumerate(TREE_FANOUT):
        letter = chr(ord("a") + depth)
        level = [parent / f"{letter}{k}" for parent in level for k in range(fanout)]
        every += level
    return every


_GENERATORS: dict[str, tuple[Callable[[Path, float], None], str]] = {
    "big": (_generate_big, "big.bin"),
    "text": (_generate_text, "text.txt"),
    "tree": (_generate_tree, "tree"),
}
