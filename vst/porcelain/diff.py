"""``vst diff``: the changes between two trees, as a patch, a diffstat or name-status lines.

The renderers take the changes and two *loaders*, one per side, each returning a side's
file content for a change; ``store_loader`` reads both from the store, and a working copy
can supply its own for the new side. A symlink's content is its target.

Patch format (git's, with ``diff --vst``): per change a header, then either nothing (a
mode change alone, an empty file, an empty directory), ``Binary files A and B differ``, or
``---``/``+++`` lines and unified hunks with 3 lines of context. A file is binary when
either side has a NUL in its first 8 KiB, is not UTF-8, or is over 8 MiB (never loaded
whole). A type change (``T``) is shown as a deletion followed by an addition, as in git.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

from vst.objects.oid import Oid
from vst.objects.tree import TreeEntry
from vst.plumbing.cat_file import file_content
from vst.plumbing.diff_tree import Change, diff_trees
from vst.plumbing.quoting import quote
from vst.plumbing.rev_parse import peel_to_tree
from vst.store import Store

Loader = Callable[[Change], bytes]
CONTEXT = 3
MAX_TEXT = 8 * 1024 * 1024  # larger files are shown as binary and never loaded
SNIFF = 8 * 1024  # a NUL in this many first bytes makes a file binary
_ZERO_ID = b"0" * 12
_Opcode = tuple[str, int, int, int, int]


def diff(store: Store, old: Oid | None, new: Oid | None,
         paths: Sequence[bytes] = ()) -> list[Change]:
    """The changes from ``old`` to ``new``: commits or trees, None for an empty tree."""
    old_tree = peel_to_tree(store, old) if old is not None else None
    new_tree = peel_to_tree(store, new) if new is not None else None
    return diff_trees(store, old_tree, new_tree, paths)


def store_loader(store: Store) -> tuple[Loader, Loader]:
    """Loaders (old side, new side) reading file content from the store, verified."""

    def load(entry: TreeEntry | None) -> bytes:
        if entry is None or entry.is_dir:
            return b""
        return b"".join(file_content(store, entry.oid))

    return (lambda change: load(change.old)), (lambda change: load(change.new))


# -- comparing one file ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Compared:
    binary: bool
    old_lines: list[bytes]
    new_lines: list[bytes]
    hunks: list[list[_Opcode]]
    insertions: int
    deletions: int


def _has_content(entry: TreeEntry | None) -> bool:
    return entry is not None and not entry.is_dir


def _compare(change: Change, load_old: Loader, load_new: Loader) -> _Compared | None:
    """The content difference of an A, D or M change; None when there is none to show
    (same id on both sides, or directories)."""
    old, new = change.old, change.new
    if not _has_content(old) and not _has_content(new):
        return None
    if old is not None and new is not None and old.oid == new.oid:
        return None
    if max(_size(old), _size(new)) > MAX_TEXT:
        return _Compared(True, [], [], [], 0, 0)
    old_data = load_old(change) if _has_content(old) else b""
    new_data = load_new(change) if _has_content(new) else b""
    if _is_binary(old_data) or _is_binary(new_data):
        return _Compared(True, [], [], [], 0, 0)
    old_lines, new_lines = _lines(old_data), _lines(new_data)
    opcodes = _opcodes(old_lines, new_lines)
    deletions = sum(i2 - i1 for tag, i1, i2, _, _ in opcodes if tag != "equal")
    insertions = sum(j2 - j1 for tag, _, _, j1, j2 in opcodes if tag != "equal")
    return _Compared(False, old_lines, new_lines, _group(opcodes, CONTEXT), insertions,
                     deletions)


def _is_binary(data: bytes) -> bool:
    if len(data) > MAX_TEXT or b"\0" in data[:SNIFF]:
        return True
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def _lines(data: bytes) -> list[bytes]:
    """Lines with their LF; the last one lacks it when the file does not end with one.
    Only LF ends a line (a CR stays part of the line), as in git."""
    parts = data.split(b"\n")
    lines = [part + b"\n" for part in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1])
    return lines


def _opcodes(a: list[bytes], b: list[bytes]) -> list[_Opcode]:
    # The common head and tail are taken off first: most edits touch a few lines of a
    # long file, and SequenceMatcher is far slower than a comparison per line.
    head = 0
    while head < min(len(a), len(b)) and a[head] == b[head]:
        head += 1
    tail = 0
    while tail < min(len(a), len(b)) - head and a[-1 - tail] == b[-1 - tail]:
        tail += 1
    middle = difflib.SequenceMatcher(None, a[head:len(a) - tail], b[head:len(b) - tail],
                                     autojunk=False).get_opcodes()
    codes: list[_Opcode] = [("equal", 0, head, 0, head)]
    codes += [(tag, i1 + head, i2 + head, j1 + head, j2 + head)
              for tag, i1, i2, j1, j2 in middle]
    codes.append(("equal", len(a) - tail, len(a), len(b) - tail, len(b)))
    merged: list[_Opcode] = []
    for code in codes:
        if code[1] == code[2] and code[3] == code[4]:
            continue
        if merged and code[0] == "equal" and merged[-1][0] == "equal":
            tag, i1, _, j1, _ = merged.pop()
            code = (tag, i1, code[2], j1, code[4])
        merged.append(code)
    return merged


def _group(codes: list[_Opcode], n: int) -> list[list[_Opcode]]:
    """Hunks: the changes with up to ``n`` lines of context, as difflib groups them."""
    if not any(tag != "equal" for tag, *_ in codes):
        return []
    codes = list(codes)
    if codes[0][0] == "equal":
        tag, i1, i2, j1, j2 = codes[0]
        codes[0] = (tag, max(i1, i2 - n), i2, max(j1, j2 - n), j2)
    if codes[-1][0] == "equal":
        tag, i1, i2, j1, j2 = codes[-1]
        codes[-1] = (tag, i1, min(i2, i1 + n), j1, min(j2, j1 + n))
    groups: list[list[_Opcode]] = []
    group: list[_Opcode] = []
    for tag, i1, i2, j1, j2 in codes:
        if tag == "equal" and i2 - i1 > 2 * n:
            group.append((tag, i1, min(i2, i1 + n), j1, min(j2, j1 + n)))
            groups.append(group)
            group = []
            i1, j1 = max(i1, i2 - n), max(j1, j2 - n)
        group.append((tag, i1, i2, j1, j2))
    if group and not (len(group) == 1 and group[0][0] == "equal"):
        groups.append(group)
    return groups


# -- patch ----------------------------------------------------------------------------------


def _sides(change: Change) -> list[Change]:
    """A type change is shown as the old entry deleted, then the new one added."""
    if change.status == "T":
        return [Change("D", change.path, change.old, None),
                Change("A", change.path, None, change.new)]
    return [change]


def render_patch(changes: Iterable[Change], load_old: Loader,
                 load_new: Loader) -> Iterator[bytes]:
    """The changes as a unified diff in git's layout, one piece of bytes per file."""
    for change in changes:
        for side in _sides(change):
            yield _patch(side, load_old, load_new)


def _mode_word(entry: TreeEntry) -> bytes:
    return b"directory" if entry.is_dir else b"file"


def _patch(change: Change, load_old: Loader, load_new: Loader) -> bytes:
    old, new = change.old, change.new
    a_name = quote(b"a/" + change.path).encode()
    b_name = quote(b"b/" + change.path).encode()
    out = [b"diff --vst %s %s\n" % (a_name, b_name)]
    if old is None and new is not None:
        out.append(b"new %s mode %06o\n" % (_mode_word(new), new.mode))
    elif new is None and old is not None:
        out.append(b"deleted %s mode %06o\n" % (_mode_word(old), old.mode))
    elif old is not None and new is not None and old.mode != new.mode:
        out.append(b"old mode %06o\nnew mode %06o\n" % (old.mode, new.mode))
    compared = _compare(change, load_old, load_new)
    if compared is None:
        return b"".join(out)
    old_id = old.oid.short().encode() if old is not None else _ZERO_ID
    new_id = new.oid.short().encode() if new is not None else _ZERO_ID
    same_mode = b" %06o" % old.mode if old and new and old.mode == new.mode else b""
    out.append(b"index %s..%s%s\n" % (old_id, new_id, same_mode))
    a_side = a_name if old is not None else b"/dev/null"
    b_side = b_name if new is not None else b"/dev/null"
    if compared.binary:
        out.append(b"Binary files %s and %s differ\n" % (a_side, b_side))
    elif compared.hunks:
        out.append(b"--- %s\n+++ %s\n" % (a_side, b_side))
        for hunk in compared.hunks:
            out += _hunk(hunk, compared.old_lines, compared.new_lines)
    return b"".join(out)


def _range(start: int, length: int) -> bytes:
    if length == 1:
        return b"%d" % (start + 1)
    return b"%d,%d" % (start + 1 if length else start, length)


def _hunk(hunk: list[_Opcode], a: list[bytes], b: list[bytes]) -> list[bytes]:
    first, last = hunk[0], hunk[-1]
    out = [b"@@ -%s +%s @@\n" % (_range(first[1], last[2] - first[1]),
                                 _range(first[3], last[4] - first[3]))]
    for tag, i1, i2, j1, j2 in hunk:
        if tag == "equal":
            out += [_line(b" ", line) for line in a[i1:i2]]
            continue
        out += [_line(b"-", line) for line in a[i1:i2]]
        out += [_line(b"+", line) for line in b[j1:j2]]
    return out


def _line(sign: bytes, line: bytes) -> bytes:
    if line.endswith(b"\n"):
        return sign + line
    return sign + line + b"\n\\ No newline at end of file\n"


# -- --stat and --name-status -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FileStat:
    path: bytes
    status: str
    insertions: int
    deletions: int
    binary: bool
    old_size: int  # bytes; 0 for an absent side or a directory
    new_size: int


def diff_stat(changes: Iterable[Change], load_old: Loader, load_new: Loader) -> list[FileStat]:
    """Lines inserted and deleted per change (a type change counts both of its sides)."""
    stats = []
    for change in changes:
        insertions = deletions = 0
        binary = False
        for side in _sides(change):
            compared = _compare(side, load_old, load_new)
            if compared is not None:
                binary = binary or compared.binary
                insertions += compared.insertions
                deletions += compared.deletions
        stats.append(FileStat(change.path, change.status, insertions, deletions, binary,
                              _size(change.old), _size(change.new)))
    return stats


def _size(entry: TreeEntry | None) -> int:
    return entry.size if entry is not None and not entry.is_dir else 0


def format_stat(stats: Sequence[FileStat], *, width: int = 80) -> Iterator[bytes]:
    """git's diffstat: `` PATH | N ++--`` per file (the bar scaled to fit ``width``), then
    `` N files changed, N insertions(+), N deletions(-)``."""
    names = [quote(s.path) for s in stats]
    name_width = max((len(n) for n in names), default=0)
    totals = [s.insertions + s.deletions for s in stats if not s.binary]
    number_width = len(str(max(totals, default=0)))
    if any(s.binary for s in stats):
        number_width = max(number_width, len("Bin"))  # as git: the counts line up with it
    bar_width = max(width - name_width - number_width - 6, 10)
    most = max(totals, default=0)
    for stat, name in zip(stats, names, strict=True):
        if stat.binary:
            line = f" {name:<{name_width}} | Bin {stat.old_size} -> {stat.new_size} bytes"
        else:
            plus, minus = stat.insertions, stat.deletions
            if most > bar_width:
                plus, minus = _scale(plus, bar_width, most), _scale(minus, bar_width, most)
            total = stat.insertions + stat.deletions
            line = f" {name:<{name_width}} | {total:>{number_width}} {'+' * plus}{'-' * minus}"
        yield line.rstrip().encode() + b"\n"
    yield _summary(len(stats), sum(s.insertions for s in stats),
                   sum(s.deletions for s in stats)).encode() + b"\n"


def _scale(count: int, width: int, most: int) -> int:
    return 1 + count * (width - 1) // most if count else 0


def _summary(files: int, insertions: int, deletions: int) -> str:
    text = f" {files} file{'' if files == 1 else 's'} changed"
    # As git: a count of zero is left out unless both are zero.
    if insertions or not deletions:
        text += f", {insertions} insertion{'' if insertions == 1 else 's'}(+)"
    if deletions or not insertions:
        text += f", {deletions} deletion{'' if deletions == 1 else 's'}(-)"
    return text


def format_name_status(changes: Iterable[Change], *, nul: bool = False) -> Iterator[bytes]:
    """``<status> TAB <path> LF`` per change, the path C-quoted; with ``nul``,
    ``<status> NUL <path> NUL`` with the path raw (git's ``--name-status -z``)."""
    for change in changes:
        status = change.status.encode()
        if nul:
            yield status + b"\0" + change.path + b"\0"
        else:
            yield status + b"\t" + quote(change.path).encode() + b"\n"
