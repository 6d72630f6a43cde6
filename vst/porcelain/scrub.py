"""``vst scrub``: verify every pack copy on the volumes, reading each one as the volume has it.

For each volume (or the one named) the packs are listed from the volume itself, not from
the index, and each pack is read front to back in bounded pieces (range reads), so memory
stays flat whatever the pack's size (one piece plus the largest record):

- its BLAKE3 must be its name (invariant 3: this needs no key);
- its header, footer and index must parse (the checks of ``verify-pack``);
- each record's framing (header, id, type, flags, length) must hold, and, since this store
  each record is unsealed and re-hashed against its object id where its keyring can be
  opened (always for unencrypted packs); without the key only what needs none is checked:
  the pack's name, its index and the records' framing.

It also reports copies the index says a volume holds that the volume lacks (missing), and
packs on a volume that the index does not know (unknown: reported, not an error).

``subset=(n, t)`` checks the packs whose id falls in part ``n`` of ``t`` (the first eight
hex digits modulo ``t``), so that runs ``1/t`` .. ``t/t`` together cover every pack exactly
once. Every pack checked is recorded in a state file under the store's ``tmp/scrub/`` (one
per subset): ``resume=True`` continues an interrupted pass from it, and a pass that
completes clears it.
"""

from __future__ import annotations

import json
import os
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial

import blake3

from vst.errors import (
    Corrupt,
    NotFound,
    ProtocolError,
    UnsupportedFormat,
    UsageError,
    VolumeIOError,
)
from vst.fsio import read_file
from vst.objects.oid import is_full_hex
from vst.objects.pack import KEYED_MAGIC, MAGIC, NO_KEYRING, PackEntry, read_index
from vst.objects.seal import Sealing, verify_record
from vst.plumbing.verify_pack import Sealings
from vst.remotes.volume import Volume
from vst.store import Store

PIECE = 4 * 1024 * 1024  # bytes per range read
# Packs checked at once: reading, BLAKE3 and zstd all release the GIL, so two threads keep
# both cores of a small machine busy (1 GiB warm: 1.6 s with one, see the closing note).
THREADS = max(2, min(4, os.cpu_count() or 1))

BAD = "bad"
MISSING = "missing"
UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class ScrubProblem:
    volume: str
    pack: str  # the pack's hex id, or the volume object's name when it is no pack name
    kind: str  # BAD, MISSING or UNKNOWN
    message: str  # the whole line: "pack <id> on volume '<name>': <what is wrong>"


@dataclass(slots=True)
class ScrubResult:
    volumes: list[str] = field(default_factory=list)
    packs_checked: int = 0  # pack copies verified in this pass, resumed ones included
    bytes_checked: int = 0
    packs_resumed: int = 0  # of which taken from the state of an interrupted run
    bytes_resumed: int = 0
    bad: int = 0  # pack copies with at least one problem
    missing: int = 0
    unknown: int = 0
    problems: list[ScrubProblem] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        """No bad and no missing copy (unknown packs are not an error)."""
        return self.bad == 0 and self.missing == 0


def parse_subset(text: str) -> tuple[int, int]:
    """``"N/T"`` -> ``(N, T)`` with 1 <= N <= T."""
    try:
        n_text, t_text = text.split("/")
        n, t = int(n_text), int(t_text)
    except ValueError:
        raise UsageError(f"invalid subset '{text}': expected N/T, as in 1/5") from None
    if not 1 <= n <= t:
        raise UsageError(f"invalid subset '{text}': need 1 <= N <= T")
    return n, t


def in_subset(pack_hex: str, subset: tuple[int, int] | None) -> bool:
    if subset is None:
        return True
    n, t = subset
    return int(pack_hex[:8], 16) % t == n - 1


def scrub(store: Store, *, volume: str | None = None, subset: tuple[int, int] | None = None,
          resume: bool = False, progress: Callable[[int], None] | None = None) -> ScrubResult:
    """Verify the pack copies on ``volume`` (every volume when None); ``progress`` gets the
    number of bytes read after each piece. Problems are collected, never raised; a volume
    that cannot be reached raises."""
    from vst.ssh.client import RemoteStore

    if isinstance(store, RemoteStore):  # the server scrubs its own volumes
        said, _ = store.connection.call(
            "scrub", volume=volume, subset=list(subset) if subset else None, resume=resume,
            progress=lambda what, n: progress(n) if progress and what == "add" else None)
        try:
            problems = [ScrubProblem(**p) for p in said.pop("problems")]
            return ScrubResult(**said, problems=problems)
        except (AttributeError, KeyError, TypeError):
            raise ProtocolError(f"'{store.path}' sent a malformed scrub result") from None
    specs = store.volume_specs()
    if volume is not None:
        specs = [spec for spec in specs if spec.name == volume]
        if not specs:
            raise NotFound(f"no volume '{volume}' in the store")
    odb = store.odb
    indexed = {row.pack.hex: row for row in odb.index.packs()}
    state = _State(os.path.join(store.path, "tmp", "scrub"), subset, store)
    done = state.load() if resume else {}
    if not resume:
        state.clear([spec.volume_id for spec in specs])
    result = ScrubResult()
    lock = threading.Lock()

    def counted(size: int) -> None:
        if progress is not None:
            with lock:  # the checks run in threads; the caller's counter need not be safe
                progress(size)

    for spec in specs:
        backend = store.check_volume(spec)
        result.volumes.append(spec.name)
        listed = _listed_packs(backend, spec.name, subset, result)
        previous = done.get(spec.volume_id, {})
        order = sorted(listed)
        for pack_hex in order:
            where = f"pack {pack_hex} on volume '{spec.name}'"
            row = indexed.get(pack_hex)
            if row is None:
                _report(result, spec.name, pack_hex, UNKNOWN, f"{where}: not in the index")
            elif spec.volume_id not in row.volumes:
                _report(result, spec.name, pack_hex, UNKNOWN,
                        f"{where}: the index records no copy on this volume")

        check = partial(_check_listed, backend, spec.name, listed, odb.sealing_or_none, counted)
        for pack_hex, (size, messages), resumed in _in_order(check, order, previous):
            if resumed:
                result.packs_resumed += 1
                result.bytes_resumed += size
            else:
                state.record(spec.volume_id, pack_hex, size, messages)
            result.packs_checked += 1
            result.bytes_checked += size
            if messages:
                result.bad += 1
                result.problems.extend(ScrubProblem(spec.name, pack_hex, BAD, m)
                                       for m in messages)
        for pack_hex, row in sorted(indexed.items()):
            if spec.volume_id in row.volumes and pack_hex not in listed \
                    and in_subset(pack_hex, subset):
                result.missing += 1
                _report(result, spec.name, pack_hex, MISSING,
                        f"pack {pack_hex} on volume '{spec.name}': missing (the index records "
                        "a copy there)")
    state.clear([spec.volume_id for spec in specs])
    return result


def _report(result: ScrubResult, volume: str, pack: str, kind: str, message: str) -> None:
    if kind == UNKNOWN:
        result.unknown += 1
    result.problems.append(ScrubProblem(volume, pack, kind, message))


def _listed_packs(backend: Volume, volume: str, subset: tuple[int, int] | None,
                  result: ScrubResult) -> dict[str, str]:
    """Pack hex id -> volume object name, for the packs on the volume in ``subset``. Names
    under packs/ that are no pack name are reported as unknown (by the first subset only,
    so that a full set of subsets reports each once)."""
    packs = {}
    for name in backend.list("packs/"):
        parts = name.split("/")
        if len(parts) == 3 and is_full_hex(parts[2]) and parts[1] == parts[2][:2]:
            if in_subset(parts[2], subset):
                packs[parts[2]] = name
        elif subset is None or subset[0] == 1:
            _report(result, volume, name, UNKNOWN,
                    f"'{name}' on volume '{volume}': not a pack name")
    return packs


Checked = tuple[int, list[str]]


def _in_order(check: Callable[[str], Checked], order: list[str],
              previous: dict[str, Checked]) -> Iterator[tuple[str, Checked, bool]]:
    """(pack, (size, problems), resumed) for each of ``order``: from ``previous`` when an
    interrupted pass checked it, else checked by THREADS threads, a few packs ahead and
    handed back in order as each completes (so that each is recorded before the next: an
    interruption loses no finished work, and stops without checking the rest)."""
    window: deque[tuple[str, Future[Checked] | None]] = deque()
    pending = iter(order)
    with ThreadPoolExecutor(THREADS, thread_name_prefix="vst-scrub") as pool:
        try:
            while True:
                while len(window) < 2 * THREADS:
                    pack_hex = next(pending, None)
                    if pack_hex is None:
                        break
                    window.append((pack_hex, None if pack_hex in previous
                                   else pool.submit(check, pack_hex)))
                if not window:
                    return
                pack_hex, future = window.popleft()
                if future is None:
                    yield pack_hex, previous[pack_hex], True
                else:
                    yield pack_hex, future.result(), False
        finally:
            for _, future in window:
                if future is not None:
                    future.cancel()


def _check_listed(backend: Volume, volume: str, listed: dict[str, str], sealings: Sealings,
                  progress: Callable[[int], None], pack_hex: str) -> Checked:
    return check_pack(backend, listed[pack_hex], pack_hex,
                      f"pack {pack_hex} on volume '{volume}'", sealings, progress)


def check_pack(backend: Volume, name: str, pack_hex: str, where: str, sealings: Sealings,
               progress: Callable[[int], None] | None) -> tuple[int, list[str]]:
    """Read one pack copy in pieces; return its size and what is wrong with it. Records
    are unsealed where ``sealings`` opens the pack's keyring, else framed only."""
    try:
        size = backend.size(name)
    except NotFound:
        return 0, [f"{where}: vanished while scrubbing"]
    except VolumeIOError as exc:
        return 0, [f"{where}: cannot read: {exc}"]
    problems: list[str] = []

    def load(offset: int, length: int) -> bytes:
        return backend.load(name, offset, length)

    entries: list[PackEntry] = []
    sealing: Sealing | None = None
    header = MAGIC  # what the pack must start with: its footer says which version
    try:
        index = read_index(load, size, where)
        entries = sorted(index, key=lambda e: e.offset)
        sealing = sealings(index.keyring_id)
        header = MAGIC if index.keyring_id == NO_KEYRING else KEYED_MAGIC
    except (Corrupt, UnsupportedFormat) as exc:
        problems.append(str(exc))
    except (NotFound, VolumeIOError) as exc:
        problems.append(f"{where}: cannot read: {exc}")
    hasher = blake3.blake3()
    position = 0
    following = 0  # the next record (entries[following]) to verify
    try:
        for end in _reads(entries, size):
            piece = backend.load(name, position, end - position)
            if not piece:
                problems.append(f"{where}: shorter than its listed size")
                break
            hasher.update(piece)
            if position == 0 and piece[:len(MAGIC)] != header[:len(piece)]:
                problems.append(f"{where}: not a vst pack (bad magic)")
            with memoryview(piece) as view:
                while following < len(entries) and \
                        entries[following].offset + entries[following].length \
                        <= position + len(piece):
                    entry = entries[following]
                    following += 1
                    if entry.offset < position:  # overlaps the previous read: not framed
                        problems.append(f"{where}: object {entry.oid} overlaps another")
                        continue
                    record = view[entry.offset - position:entry.offset - position
                                  + entry.length]
                    try:
                        verify_record(record, entry.oid, sealing, where)
                    except (Corrupt, UnsupportedFormat) as exc:
                        problems.append(str(exc))
                    finally:
                        record.release()
            position += len(piece)
            if progress:
                progress(len(piece))
            if position < end:
                problems.append(f"{where}: shorter than its listed size")
                break
    except (NotFound, VolumeIOError) as exc:
        problems.append(f"{where}: cannot read: {exc}")
    if position == size and hasher.hexdigest() != pack_hex:
        problems.insert(0, f"{where}: content does not match its name")
    return size, problems


def _reads(entries: list[PackEntry], size: int) -> list[int]:
    """Where each range read of a pack ends: at record ends, so that no record straddles
    two reads and none is copied to be put together. A read holds about PIECE bytes of
    whole records (or one larger record); the header goes with the first, and what follows
    the last record (the index and footer, or a whole pack whose index cannot be read) is
    read PIECE at a time."""
    ends: list[int] = []
    cuts = sorted({e.offset + e.length for e in entries if 0 < e.offset + e.length <= size})
    position = 0
    for number, cut in enumerate(cuts):
        if number + 1 == len(cuts) or cuts[number + 1] - position > PIECE:
            ends.append(cut)
            position = cut
    ends.extend(range(position + PIECE, size, PIECE))
    if position < size:
        ends.append(size)
    return ends


class _State:
    """Packs checked in the current pass, as JSON lines appended after each pack:
    ``{"volume": ID, "pack": HEX, "size": N, "problems": [...]}``. A torn last line (a crash
    while appending) is ignored: that pack is checked again."""

    def __init__(self, directory: str, subset: tuple[int, int] | None, store: Store) -> None:
        self.directory = directory
        label = "all" if subset is None else f"{subset[0]}-of-{subset[1]}"
        self.path = os.path.join(directory, f"{label}.jsonl")
        self.fs = store.fs

    def load(self) -> dict[str, dict[str, tuple[int, list[str]]]]:
        done: dict[str, dict[str, tuple[int, list[str]]]] = {}
        try:
            data = read_file(self.path)
        except NotFound:
            return done
        for line in data.splitlines():
            try:
                record = json.loads(line)
                done.setdefault(str(record["volume"]), {})[str(record["pack"])] = (
                    int(record["size"]), [str(p) for p in record["problems"]])
            except (ValueError, KeyError, TypeError):
                continue
        return done

    def record(self, volume_id: str, pack_hex: str, size: int, problems: list[str]) -> None:
        if not os.path.isdir(self.directory):
            self.fs.makedirs(self.directory)
        line = json.dumps({"volume": volume_id, "pack": pack_hex, "size": size,
                           "problems": problems})
        self.fs.append(self.path, line.encode() + b"\n")

    def clear(self, volume_ids: list[str]) -> None:
        """Forget the given volumes' progress; the file goes when nothing is left."""
        if not os.path.exists(self.path):
            return
        keep = [line for line in read_file(self.path).splitlines()
                if _volume_of(line) not in volume_ids]
        if keep:
            self.fs.write_file(self.path, b"".join(line + b"\n" for line in keep))
        else:
            self.fs.remove(self.path)


def _volume_of(line: bytes) -> str | None:
    try:
        return str(json.loads(line)["volume"])
    except (ValueError, KeyError, TypeError):
        return None
