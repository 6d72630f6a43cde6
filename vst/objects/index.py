"""The object index: which pack holds each object, and which volumes hold each pack.

It is only a cache (``vst index rebuild`` recreates it from the packs on the volumes), kept
in SQLite so lookups stay fast and memory stays flat however large the store grows.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Sequence
from typing import NamedTuple

from vst.errors import CorruptConfig
from vst.objects.oid import Oid
from vst.objects.pack import NO_KEYRING, PackIndex

SCHEMA_VERSION = 2
_SCHEMA = """
CREATE TABLE IF NOT EXISTS objects (
    id BLOB PRIMARY KEY, pack BLOB NOT NULL, offset INTEGER NOT NULL, length INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS packs (
    id BLOB PRIMARY KEY, size INTEGER NOT NULL, count INTEGER NOT NULL, keyring BLOB
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS pack_copies (
    pack BLOB NOT NULL, volume TEXT NOT NULL, PRIMARY KEY (pack, volume)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS pack_owners (
    collection TEXT NOT NULL, pack BLOB NOT NULL, PRIMARY KEY (collection, pack)
) WITHOUT ROWID;
"""
# packs.keyring: the keyring id an encrypted pack's footer names (NULL: unencrypted); added
# in schema 2, which an index of schema 1 (all of whose packs are unencrypted) becomes by
# adding the column.
# pack_owners: the packs each collection's commits have written or reused, so that counting
# a collection's under-replicated packs is one query rather than a walk of its history.
# Added after schema 1 and created by CREATE IF NOT EXISTS in older indexes (where it starts
# empty: 'vst replicate' fills it from a walk, which is the authority).
# SQLite limits the number of host parameters in one statement.
_BATCH = 500


class Location(NamedTuple):
    pack: Oid
    offset: int
    length: int
    keyring: bytes | None = None  # the pack's keyring id; None when unencrypted


# Where one of the ids asked of ``locate_many`` is: (pack id, offset, length, its position
# among the ids asked for, the pack's keyring id).
Located = tuple[bytes, int, int, int, bytes | None]


class PackRow(NamedTuple):
    pack: Oid
    size: int
    objects: int
    volumes: tuple[str, ...]
    keyring: bytes | None = None  # None: unencrypted


class ObjectIndex:
    """Thread-safe: one connection behind a lock (lookups are microseconds)."""

    def __init__(self, path: str, *, read_only: bool = False) -> None:
        self.path = path
        self._lock = threading.Lock()
        try:
            if read_only:  # a helper process that only asks what is there
                self._db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=60,
                                           check_same_thread=False, isolation_level=None)
                return
            self._db = sqlite3.connect(path, timeout=60, check_same_thread=False,
                                       isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            # A cache, but one whose loss costs a rebuild: FULL keeps a commit's index rows
            # durable before its ref moves (packs, index, ref: in that order).
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version == 1:
                self._db.execute("ALTER TABLE packs ADD COLUMN keyring BLOB")
                self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            elif version == 0:
                self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            elif version != SCHEMA_VERSION:
                raise CorruptConfig(f"index '{path}' has unknown schema {version}",
                                    hint="run 'vst index rebuild'")
        except sqlite3.DatabaseError as exc:
            raise CorruptConfig(f"index '{path}' is unreadable: {exc}",
                                hint="run 'vst index rebuild'") from None

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _query(self, sql: str, params: Sequence[object] = ()) -> list[tuple]:
        with self._lock:
            try:
                return self._db.execute(sql, params).fetchall()
            except sqlite3.DatabaseError as exc:
                raise CorruptConfig(f"index '{self.path}': {exc}",
                                    hint="run 'vst index rebuild'") from None

    def lookup(self, oid: Oid) -> Location | None:
        rows = self._query("SELECT o.pack, o.offset, o.length, p.keyring FROM objects o "
                           "JOIN packs p ON p.id = o.pack WHERE o.id = ?", (oid.raw,))
        if not rows:
            return None
        pack, offset, length, keyring = rows[0]
        return Location(Oid(pack), offset, length, keyring)

    def lookup_many(self, oids: Sequence[Oid]) -> list[Location | None]:
        """``lookup`` for each of ``oids``, in order, a few hundred to a query: a restore
        asks for every object it writes, and one query each cost more than the rest of
        the lookup."""
        rows = self._query_in("SELECT o.id, o.pack, o.offset, o.length, p.keyring FROM "
                              "objects o JOIN packs p ON p.id = o.pack "
                              "WHERE o.id IN ({marks})", oids)
        packs: dict[bytes, Oid] = {}  # one Oid a pack, not one an object
        found = {oid: Location(packs.get(pack) or packs.setdefault(pack, Oid(pack)), offset,
                               length, keyring)
                 for oid, pack, offset, length, keyring in rows}
        return [found.get(oid.raw) for oid in oids]

    def locate_many(self, oids: Sequence[Oid]) -> list[Located]:
        """Where each of ``oids`` that the index knows is, sorted by pack and offset (the
        order that reads them): ``lookup_many`` in plain tuples, as ``read_many`` uses
        them. A restore asks this for every file it writes: no Location or Oid object is
        made for each, and a job's answers pickle in a third of the time."""
        rows = self._query_in("SELECT o.id, o.pack, o.offset, o.length, p.keyring FROM "
                              "objects o JOIN packs p ON p.id = o.pack "
                              "WHERE o.id IN ({marks})", oids)
        found = {row[0]: row for row in rows}
        located: list[Located] = []
        for number, oid in enumerate(oids):
            row = found.get(oid.raw)
            if row is not None:
                located.append((row[1], row[2], row[3], number, row[4]))
        located.sort()
        return located

    def _query_in(self, sql: str, keys: Iterable[Oid]) -> list[tuple]:
        """``sql`` with ``IN ({marks})`` run over ``keys`` in batches (SQLite limits the
        parameters of one statement); the rows of every batch."""
        wanted = [key.raw for key in keys]
        rows: list[tuple] = []
        for start in range(0, len(wanted), _BATCH):
            batch = wanted[start:start + _BATCH]
            rows += self._query(sql.format(marks=",".join("?" * len(batch))), batch)
        return rows

    def has_many(self, oids: Iterable[Oid]) -> set[Oid]:
        return {Oid(row[0]) for row in
                self._query_in("SELECT id FROM objects WHERE id IN ({marks})", oids)}

    def has(self, oid: Oid) -> bool:
        return bool(self._query("SELECT 1 FROM objects WHERE id = ?", (oid.raw,)))

    def resolve_prefix(self, prefix_hex: str, limit: int = 2) -> list[Oid]:
        """Ids starting with ``prefix_hex`` (at most ``limit``), for abbreviated ids."""
        low = bytes.fromhex(prefix_hex.ljust(64, "0"))
        high = bytes.fromhex(prefix_hex.ljust(64, "f"))
        rows = self._query("SELECT id FROM objects WHERE id >= ? AND id <= ? LIMIT ?",
                           (low, high, limit))
        return [Oid(row[0]) for row in rows]

    def add_pack(self, pack: Oid, size: int, index: PackIndex, volumes: Iterable[str]) -> None:
        self.add_packs([(pack, size, index, tuple(volumes))])

    def add_packs(self, packs: Sequence[tuple[Oid, int, PackIndex, Sequence[str]]],
                  *, owner: str | None = None) -> None:
        """Record packs, their objects and the volumes holding them, in one transaction
        (one fsync of the log for many packs).

        An object already indexed in another pack keeps its first location (both copies
        are valid; the newer pack becomes garbage for gc when unreferenced)."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                for pack, size, index, volumes in packs:
                    entries = index.entries
                    keyring = index.keyring_id if index.keyring_id != NO_KEYRING else None
                    self._db.execute("INSERT OR REPLACE INTO packs VALUES (?, ?, ?, ?)",
                                     (pack.raw, size, len(entries), keyring))
                    self._db.executemany(
                        "INSERT OR IGNORE INTO objects VALUES (?, ?, ?, ?)",
                        [(e.oid.raw, pack.raw, e.offset, e.length) for e in entries])
                    self._db.executemany("INSERT OR IGNORE INTO pack_copies VALUES (?, ?)",
                                         [(pack.raw, volume) for volume in volumes])
                    if owner is not None:
                        self._db.execute("INSERT OR IGNORE INTO pack_owners VALUES (?, ?)",
                                         (owner, pack.raw))
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise

    def pack_volumes(self, pack: Oid) -> list[str]:
        rows = self._query("SELECT volume FROM pack_copies WHERE pack = ? ORDER BY volume",
                           (pack.raw,))
        return [row[0] for row in rows]

    def _write(self, statements: Sequence[tuple[str, Sequence[Sequence[object]]]]) -> None:
        """Run ``executemany`` statements in one transaction."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                for sql, rows in statements:
                    self._db.executemany(sql, rows)
                self._db.execute("COMMIT")
            except sqlite3.DatabaseError as exc:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise CorruptConfig(f"index '{self.path}': {exc}",
                                    hint="run 'vst index rebuild'") from None
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise

    def add_copies(self, copies: Iterable[tuple[Oid, str]]) -> None:
        """Record (pack, volume id) copies of packs already indexed."""
        self._write([("INSERT OR IGNORE INTO pack_copies VALUES (?, ?)",
                      [(pack.raw, volume) for pack, volume in copies])])

    def forget_copies(self, copies: Iterable[tuple[Oid, str]]) -> None:
        """Forget (pack, volume id) copies found gone from their volume."""
        self._write([("DELETE FROM pack_copies WHERE pack = ? AND volume = ?",
                      [(pack.raw, volume) for pack, volume in copies])])

    def pack_copies(self, packs: Iterable[Oid]) -> dict[Oid, set[str]]:
        """The volumes holding each of ``packs`` (an indexed pack on none maps to {})."""
        held: dict[Oid, set[str]] = {}
        for pack, volume in self._query_in(
                "SELECT p.id, c.volume FROM packs p LEFT JOIN pack_copies c "
                "ON c.pack = p.id WHERE p.id IN ({marks})", packs):
            copies = held.setdefault(Oid(pack), set())
            if volume is not None:
                copies.add(volume)
        return held

    def packs_of(self, oids: Iterable[Oid]) -> set[Oid]:
        """The packs holding ``oids`` (those indexed)."""
        return {Oid(row[0]) for row in self._query_in(
            "SELECT DISTINCT pack FROM objects WHERE id IN ({marks})", oids)}

    def add_owner(self, packs: Iterable[Oid], collection: str) -> None:
        self._write([("INSERT OR IGNORE INTO pack_owners VALUES (?, ?)",
                      [(collection, pack.raw) for pack in packs])])

    def set_owned(self, collection: str, packs: Iterable[Oid]) -> None:
        """Make ``packs`` exactly the packs ``collection`` owns (after a walk of it)."""
        self._write([("DELETE FROM pack_owners WHERE collection = ?", [(collection,)]),
                     ("INSERT OR IGNORE INTO pack_owners VALUES (?, ?)",
                      [(collection, pack.raw) for pack in packs])])

    def owned(self, collection: str) -> list[tuple[Oid, int, int, frozenset[str]]]:
        """(pack, size, objects, volume ids holding it) of every pack ``collection`` owns."""
        rows = self._query(
            "SELECT p.id, p.size, p.count, group_concat(c.volume) FROM pack_owners o "
            "JOIN packs p ON p.id = o.pack LEFT JOIN pack_copies c ON c.pack = p.id "
            "WHERE o.collection = ? GROUP BY p.id", (collection,))
        return [(Oid(pack), size, count, frozenset(vols.split(",")) if vols else frozenset())
                for pack, size, count, vols in rows]

    def forget_volume(self, volume_id: str) -> int:
        """Drop every pack copy recorded on ``volume_id`` (the packs and objects stay).
        Returns how many copies were forgotten."""
        with self._lock:
            try:
                cursor = self._db.execute("DELETE FROM pack_copies WHERE volume = ?",
                                          (volume_id,))
            except sqlite3.DatabaseError as exc:
                raise CorruptConfig(f"index '{self.path}': {exc}",
                                    hint="run 'vst index rebuild'") from None
            return cursor.rowcount

    def packs(self) -> list[PackRow]:
        rows = self._query(
            "SELECT p.id, p.size, p.count, group_concat(c.volume), p.keyring FROM packs p "
            "LEFT JOIN pack_copies c ON c.pack = p.id GROUP BY p.id ORDER BY p.id")
        return [PackRow(Oid(pack), size, count, tuple(sorted(vols.split(","))) if vols else (),
                        keyring)
                for pack, size, count, vols, keyring in rows]

    def relocate(self, packs: Sequence[tuple[Oid, PackIndex]]) -> None:
        """Point every object of ``packs`` (indexed already) at its copy there, whatever
        pack held it before: after a rotation has re-sealed them, in one transaction."""
        self._write([("UPDATE objects SET pack = ?, offset = ?, length = ? WHERE id = ?",
                      [(pack.raw, e.offset, e.length, e.oid.raw)
                       for pack, index in packs for e in index.entries])])

    def forget_packs(self, packs: Iterable[Oid]) -> None:
        """Drop ``packs`` and their copies and owners (no object may point at them)."""
        raws = [(pack.raw,) for pack in packs]
        self._write([("DELETE FROM pack_copies WHERE pack = ?", raws),
                     ("DELETE FROM pack_owners WHERE pack = ?", raws),
                     ("DELETE FROM packs WHERE id = ?", raws)])

    def objects_in(self, pack: Oid) -> int:
        return int(self._query("SELECT count(*) FROM objects WHERE pack = ?",
                               (pack.raw,))[0][0])

    def has_pack(self, pack: Oid) -> bool:
        return bool(self._query("SELECT 1 FROM packs WHERE id = ?", (pack.raw,)))

    def count(self) -> tuple[int, int, int]:
        """(objects, packs, bytes in packs)."""
        objects = self._query("SELECT count(*) FROM objects")[0][0]
        packs, size = self._query("SELECT count(*), coalesce(sum(size), 0) FROM packs")[0]
        return objects, packs, size

    def all_objects(self) -> list[tuple[Oid, Location]]:
        rows = self._query("SELECT id, pack, offset, length FROM objects ORDER BY pack, offset")
        return [(Oid(i), Location(Oid(p), o, n)) for i, p, o, n in rows]

    def clear(self) -> None:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("DELETE FROM objects")
            self._db.execute("DELETE FROM packs")
            self._db.execute("DELETE FROM pack_copies")
            self._db.execute("DELETE FROM pack_owners")
            self._db.execute("COMMIT")
