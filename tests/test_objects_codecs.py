"""Property tests for the object codecs: trees, commits, chunk lists.

Every decoder is strict: it either returns the one object whose encoding is exactly the
input (so decode -> encode is the identity on everything it accepts), or raises
CorruptObject, never another exception, whatever the bytes (S5 in RELIABILITY.md).

The formats carry no total length, so cutting a valid encoding exactly at an entry
boundary (or inside a commit message) yields another valid, shorter object; the object id,
checked by unseal, is what catches that. The truncation tests below require CorruptObject
at every other cut point and the exact prefix object at those boundaries.
"""

from __future__ import annotations

import pickle
import stat
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vst.errors import CorruptObject
from vst.objects.chunks import ChunkList, ChunkRef
from vst.objects.commit import Commit, Signature
from vst.objects.oid import OID_SIZE, Oid
from vst.objects.tree import MAX_NAME, Tree, TreeEntry, _plain_name, _TreeDecoder, name_problem
from vst.objects.types import ObjectType

FAST = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])
ONE_OID = Oid(bytes(range(32)))

# -- strategies ---------------------------------------------------------------------------

oids = st.binary(min_size=OID_SIZE, max_size=OID_SIZE).map(Oid)
names = st.binary(min_size=1, max_size=24).filter(lambda n: name_problem(n) is None)
perms = st.integers(0, 0o7777)
u64 = st.integers(0, 2**64 - 1)
i64 = st.integers(-(2**63), 2**63 - 1)
attr_keys = st.from_regex(r"[A-Za-z0-9._-]{1,12}", fullmatch=True)
attrs = st.dictionaries(attr_keys, st.binary(max_size=16), max_size=3).map(
    lambda d: tuple(sorted(d.items())))


@st.composite
def tree_entries(draw: st.DrawFn, name: st.SearchStrategy[bytes] = names) -> TreeEntry:
    kind = draw(st.sampled_from(["file", "dir", "symlink"]))
    if kind == "file":
        mode, obj, size = (stat.S_IFREG | draw(perms),
                           draw(st.sampled_from([ObjectType.BLOB, ObjectType.CHUNKS])),
                           draw(u64))
    elif kind == "dir":
        mode, obj, size = stat.S_IFDIR | draw(perms), ObjectType.TREE, 0
    else:
        mode, obj, size = stat.S_IFLNK | draw(perms), ObjectType.BLOB, draw(u64)
    return TreeEntry(draw(name), mode, obj, draw(oids), size, draw(i64), draw(attrs))


entry_lists = st.lists(tree_entries(), max_size=6, unique_by=lambda e: e.name)
trees = entry_lists.map(Tree.from_entries)

# A signature's name and email never hold '<', '>' or a newline; the name carries no
# surrounding whitespace. Surrogates cannot be encoded, so they are excluded.
_sig_text = st.text(st.characters(blacklist_categories=["Cs", "Cc"], blacklist_characters="<>"),
                    max_size=20)
signatures = st.builds(
    Signature,
    name=_sig_text.filter(lambda s: s == s.strip()),
    email=_sig_text,
    time=i64,
    tz_minutes=st.integers(-5999, 5999),
)
commits = st.builds(Commit, tree=oids, parents=st.lists(oids, max_size=3).map(tuple),
                    author=signatures, committer=signatures, message=st.binary(max_size=200))

chunk_refs = st.builds(ChunkRef, oid=oids, size=st.integers(1, 2**32 - 1))
chunk_lists = st.lists(chunk_refs, min_size=2, max_size=8).map(tuple).map(ChunkList)


def accepted_is_canonical(decode: Callable[[bytes], Any], data: bytes) -> Any:
    """Decode ``data``: CorruptObject (None returned) or an object encoding to ``data``.
    Any other exception propagates and fails the test."""
    try:
        obj = decode(data)
    except CorruptObject:
        return None
    assert obj.encode() == data, "decoder accepted a non-canonical encoding"
    return obj


def bit_flips(data: bytes):
    for bit in range(len(data) * 8):
        flipped = bytearray(data)
        flipped[bit // 8] ^= 1 << (bit % 8)
        yield bit, bytes(flipped)


@st.composite
def mutated(draw: st.DrawFn, encodings: st.SearchStrategy[bytes]) -> bytes:
    """A valid encoding with a few random byte edits: reaches deep decoder paths that
    uniform garbage never does."""
    data = bytearray(draw(encodings))
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["set", "insert", "delete"]))
        at = draw(st.integers(0, len(data)))
        if op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=4))
        elif at < len(data):
            if op == "set":
                data[at] = draw(st.integers(0, 255))
            else:
                del data[at]
    return bytes(data)


def small_tree() -> Tree:
    return Tree.from_entries([
        TreeEntry(b"a.txt", stat.S_IFREG | 0o644, ObjectType.BLOB, ONE_OID, 5, 1_700_000_000),
        TreeEntry(b"sub", stat.S_IFDIR | 0o755, ObjectType.TREE, ONE_OID, 0, -1,
                  (("x", b"1"),)),
    ])


def small_commit(message: bytes = b"m\n") -> Commit:
    who = Signature("A U Thor", "a@example.org", 1_700_000_000, 60)
    return Commit(ONE_OID, (ONE_OID,), who, replace(who, tz_minutes=-90), message)


# -- trees --------------------------------------------------------------------------------


class TestTreeRoundTrip:
    @FAST
    @given(trees)
    def test_encode_decode_identity(self, tree: Tree) -> None:
        data = tree.encode()
        assert Tree.decode(data) == tree
        assert Tree.decode(data).encode() == data

    @FAST
    @given(tree_entries())
    def test_entries_pickle_to_equal_entries(self, entry: TreeEntry) -> None:
        # How a checkout hands entries to its worker processes.
        again = pickle.loads(pickle.dumps(entry, protocol=pickle.HIGHEST_PROTOCOL))
        assert again == entry and hash(again) == hash(entry)
        assert type(again.kind) is ObjectType and type(again.oid) is Oid

    @FAST
    @given(tree_entries())
    def test_single_entry_round_trip(self, entry: TreeEntry) -> None:
        assert entry.problem() is None
        tree = Tree.from_entries([entry])
        assert Tree.decode(tree.encode()).entries == (entry,)

    @FAST
    @given(entry_lists.flatmap(lambda es: st.tuples(st.just(es), st.permutations(es))))
    def test_canonical_whatever_the_order(self, pair: tuple[list, list]) -> None:
        entries, shuffled = pair
        assert Tree.from_entries(shuffled).encode() == Tree.from_entries(entries).encode()
        names_in_order = [e.name for e in Tree.from_entries(shuffled).entries]
        assert names_in_order == sorted(e.name for e in entries)

    @FAST
    @given(st.binary(max_size=300))
    def test_garbage_is_corrupt_or_canonical(self, data: bytes) -> None:
        accepted_is_canonical(Tree.decode, data)

    @FAST
    @given(mutated(trees.map(Tree.encode)))
    def test_mutations_are_corrupt_or_canonical(self, data: bytes) -> None:
        accepted_is_canonical(Tree.decode, data)

    def test_empty_tree(self) -> None:
        assert Tree().encode() == b"\x01"
        assert Tree.decode(b"\x01") == Tree()

    def test_get(self) -> None:
        tree = small_tree()
        assert tree.get(b"sub") is not None and tree.get(b"sub").is_dir
        assert tree.get(b"nope") is None


class TestTreeStrict:
    @FAST
    @given(st.lists(tree_entries(), min_size=1, max_size=4, unique_by=lambda e: e.name))
    def test_truncation_at_every_byte(self, entries: list[TreeEntry]) -> None:
        tree = Tree.from_entries(entries)
        data = tree.encode()
        # cut -> number of whole entries, for the cuts that fall on an entry boundary
        boundaries = {len(Tree(tree.entries[:k]).encode()): k for k in range(len(entries))}
        for cut in range(len(data)):
            if cut in boundaries:
                assert Tree.decode(data[:cut]) == Tree(tree.entries[:boundaries[cut]])
            else:
                with pytest.raises(CorruptObject):
                    Tree.decode(data[:cut])

    def test_every_bit_flip(self) -> None:
        tree = small_tree()
        data = tree.encode()
        first = tree.entries[0]
        kind_at = 1 + 2 + len(first.name) + 4  # version, name length, name, mode
        oid_at = kind_at + 1 + 8 + 8  # type, size, mtime
        for bit, flipped in bit_flips(data):
            decoded = accepted_is_canonical(Tree.decode, flipped)
            at = bit // 8
            if at == 0 or at == kind_at:
                assert decoded is None, f"flip in byte {at} accepted"
            elif oid_at <= at < oid_at + OID_SIZE:
                # another id is another valid tree: only that field differs
                assert decoded is not None
                assert decoded.entries[1:] == tree.entries[1:]
                assert replace(decoded.entries[0], oid=first.oid) == first

    @pytest.mark.parametrize("name", [
        b"", b".", b"..", b".vst", b".VST", b".Vst", b"a/b", b"/", b"/abs", b"a\0b", b"\0",
        b"x" * (MAX_NAME + 1),
    ])
    def test_hostile_names(self, name: bytes) -> None:
        entry = TreeEntry(name, stat.S_IFREG | 0o644, ObjectType.BLOB, ONE_OID)
        data = Tree((entry,)).encode()
        with pytest.raises(CorruptObject):
            Tree.decode(data)
        with pytest.raises(ValueError):
            Tree.from_entries([entry])

    def test_longest_name_is_fine(self) -> None:
        entry = TreeEntry(b"x" * MAX_NAME, stat.S_IFREG | 0o644, ObjectType.BLOB, ONE_OID)
        assert Tree.decode(Tree((entry,)).encode()).entries == (entry,)

    def test_unsorted_entries(self) -> None:
        a, b = small_tree().entries
        with pytest.raises(CorruptObject, match="not sorted"):
            Tree.decode(Tree((b, a)).encode())

    def test_duplicate_entries(self) -> None:
        a = small_tree().entries[0]
        with pytest.raises(CorruptObject, match="not sorted or not unique"):
            Tree.decode(Tree((a, a)).encode())
        with pytest.raises(ValueError, match="duplicate"):
            Tree.from_entries([a, replace(a, size=1)])

    @pytest.mark.parametrize("mode", [
        0, 0o644, stat.S_IFCHR | 0o644, stat.S_IFBLK | 0o644, stat.S_IFIFO | 0o644,
        stat.S_IFSOCK | 0o644, stat.S_IFREG | 0o200000, stat.S_IFREG | 1 << 31,
        0xFFFFFFFF,
    ])
    def test_bad_modes(self, mode: int) -> None:
        entry = TreeEntry(b"f", mode, ObjectType.BLOB, ONE_OID)
        with pytest.raises(CorruptObject, match="mode"):
            Tree.decode(Tree((entry,)).encode())

    @pytest.mark.parametrize(("file_type", "kind"), [
        (stat.S_IFREG, ObjectType.TREE), (stat.S_IFREG, ObjectType.COMMIT),
        (stat.S_IFDIR, ObjectType.BLOB), (stat.S_IFDIR, ObjectType.CHUNKS),
        (stat.S_IFDIR, ObjectType.COMMIT),
        (stat.S_IFLNK, ObjectType.TREE), (stat.S_IFLNK, ObjectType.CHUNKS),
    ])
    def test_mode_type_mismatch(self, file_type: int, kind: ObjectType) -> None:
        entry = TreeEntry(b"f", file_type | 0o755, kind, ONE_OID)
        with pytest.raises(CorruptObject, match="cannot point at"):
            Tree.decode(Tree((entry,)).encode())

    @pytest.mark.parametrize("raw_kind", [0, 5, 255])
    def test_unknown_object_type(self, raw_kind: int) -> None:
        data = bytearray(small_tree().encode())
        # version, u16 name length, name, u32 mode, then the type byte
        data[1 + 2 + len(b"a.txt") + 4] = raw_kind
        with pytest.raises(CorruptObject, match="unknown object type"):
            Tree.decode(bytes(data))

    def test_directory_with_a_size(self) -> None:
        entry = TreeEntry(b"d", stat.S_IFDIR | 0o755, ObjectType.TREE, ONE_OID, size=1)
        with pytest.raises(CorruptObject, match="size 0"):
            Tree.decode(Tree((entry,)).encode())

    @pytest.mark.parametrize("attrs", [
        (("b", b""), ("a", b"")),          # unsorted
        (("a", b"1"), ("a", b"2")),        # duplicate
        (("a b", b""),), (("", b""),), (("é", b""),), (("a/b", b""),),
    ])
    def test_bad_attributes(self, attrs: tuple) -> None:
        entry = TreeEntry(b"f", stat.S_IFREG | 0o644, ObjectType.BLOB, ONE_OID, attrs=attrs)
        assert entry.problem() is not None
        try:
            data = Tree((entry,)).encode()
        except UnicodeEncodeError:
            # A non-ASCII key cannot even be encoded; forge its bytes.
            data = Tree((replace(entry, attrs=(("zz", b""),)),)).encode().replace(
                b"\x02zz", b"\x02\xc3\xa9")
        with pytest.raises(CorruptObject, match="attribute"):
            Tree.decode(data)

    @pytest.mark.parametrize("data", [b"", b"\x00", b"\x02", b"\xff" + b"\x00" * 60])
    def test_bad_version(self, data: bytes) -> None:
        with pytest.raises(CorruptObject, match="version"):
            Tree.decode(data)

    def test_error_names_the_object(self) -> None:
        with pytest.raises(CorruptObject, match=ONE_OID.hex):
            Tree.decode(b"\x02", ONE_OID)


class TestTreeDecoderPaths:
    """The decoder takes plain entries inline and leaves the rest to ``entry()``, which
    knows every rule: both must give the same tree, or the same refusal."""

    @staticmethod
    def by_the_rules(data: bytes) -> Tree | str:
        decoder = _TreeDecoder(data, "tree")
        try:
            if not data or data[0] != 1:
                raise decoder.fail("unknown version")
            decoder.pos, entries = 1, []
            while decoder.pos < len(data):
                entry = decoder.entry()
                if entries and entry.name <= entries[-1].name:
                    raise decoder.fail(f"entries not sorted or not unique at {entry.name!r}")
                entries.append(entry)
        except CorruptObject as exc:
            return str(exc)
        return Tree(tuple(entries))

    @staticmethod
    def decoded(data: bytes) -> Tree | str:
        try:
            return Tree.decode(data)
        except CorruptObject as exc:
            return str(exc)

    @FAST
    @given(mutated(trees.map(Tree.encode)))
    def test_same_outcome_on_mutations(self, data: bytes) -> None:
        assert self.decoded(data) == self.by_the_rules(data)

    @FAST
    @given(st.binary(max_size=300))
    def test_same_outcome_on_garbage(self, data: bytes) -> None:
        assert self.decoded(b"\x01" + data) == self.by_the_rules(b"\x01" + data)

    @pytest.mark.parametrize("name", [
        b".", b"..", b"...", b".vst", b".VST", b".vSt", b".vs", b".vstx", b"x.vst", b"a/b", b"/",
        b"a\0", b"\0", b"x" * MAX_NAME, b"x" * (MAX_NAME + 1), b"\xff\xfe", b" ",
    ])
    def test_plain_name_is_name_problem(self, name: bytes) -> None:
        assert _plain_name(name) == (name_problem(name) is None)

    @FAST
    @given(st.binary(min_size=1, max_size=8))
    def test_plain_name_on_any_bytes(self, name: bytes) -> None:
        assert _plain_name(name) == (name_problem(name) is None)

    def test_decoded_entries_are_frozen_and_equal(self) -> None:
        entry = small_tree().entries[0]
        decoded = Tree.decode(small_tree().encode()).entries[0]
        assert decoded == entry and hash(decoded) == hash(entry)
        assert decoded.oid == entry.oid and hash(decoded.oid) == hash(entry.oid)
        with pytest.raises(AttributeError):
            decoded.name = b"other"  # type: ignore[misc]
        with pytest.raises(AttributeError):
            decoded.oid.raw = bytes(32)  # type: ignore[misc]


# -- commits ------------------------------------------------------------------------------


class TestCommit:
    @FAST
    @given(signatures)
    def test_signature_round_trip(self, sig: Signature) -> None:
        assert sig.problem() is None
        assert Signature.decode(sig.encode()) == sig

    @FAST
    @given(commits)
    def test_encode_decode_identity(self, commit: Commit) -> None:
        data = commit.encode()
        assert Commit.decode(data) == commit
        assert Commit.decode(data).encode() == data

    @FAST
    @given(st.binary(max_size=300))
    def test_garbage_is_corrupt_or_canonical(self, data: bytes) -> None:
        accepted_is_canonical(Commit.decode, data)

    @FAST
    @given(mutated(commits.map(Commit.encode)))
    def test_mutations_are_corrupt_or_canonical(self, data: bytes) -> None:
        accepted_is_canonical(Commit.decode, data)

    def test_layout(self) -> None:
        data = small_commit().encode()
        assert data == (
            b"tree " + ONE_OID.hex.encode() + b"\n"
            b"parent " + ONE_OID.hex.encode() + b"\n"
            b"author A U Thor <a@example.org> 1700000000 +0100\n"
            b"committer A U Thor <a@example.org> 1700000000 -0130\n"
            b"\nm\n")

    @FAST
    @given(commits.map(lambda c: replace(c, message=b"")))
    def test_truncation_without_message(self, commit: Commit) -> None:
        data = commit.encode()
        for cut in range(len(data)):
            with pytest.raises(CorruptObject):
                Commit.decode(data[:cut])

    def test_truncation_inside_the_message_is_a_shorter_message(self) -> None:
        commit = small_commit(b"subject\n\nbody\n")
        data = commit.encode()
        header = len(replace(commit, message=b"").encode())
        for cut in range(len(data)):
            if cut >= header:
                assert Commit.decode(data[:cut]) == replace(commit,
                                                            message=data[header:cut])
            else:
                with pytest.raises(CorruptObject):
                    Commit.decode(data[:cut])

    def test_every_bit_flip_in_the_headers(self) -> None:
        data = small_commit(b"").encode()
        for bit, flipped in bit_flips(data):
            decoded = accepted_is_canonical(Commit.decode, flipped)
            at = bit // 8
            # the "tree " keyword and the blank line ending the headers
            if at < 5 or at >= len(data) - 2:
                assert decoded is None, f"flip in byte {at} accepted"

    @pytest.mark.parametrize(("old", "new"), [
        (b"tree " + ONE_OID.hex.encode(), b"tree " + ONE_OID.hex.upper().encode()),
        (b"tree " + ONE_OID.hex.encode(), b"tree " + ONE_OID.hex[:-1].encode()),
        (b"tree ", b"tree  "),
        (b"parent ", b"parent\t"),
        (b"\nauthor", b"\nencoding utf-8\nauthor"),
        (b"\ncommitter A U Thor <a@example.org> 1700000000 -0130", b""),
        (b"+0100", b"+0060"),       # 60 minutes: written as +0100
        (b"+0100", b"-0000"),
        (b"+0100", b"+9999"),
        (b"+0100", b"+100"),
        (b" 1700000000 +", b" 01700000000 +"),
        (b" 1700000000 +", b" 9223372036854775808 +"),
        (b"A U Thor", b"A U Thor "),
        (b"A U Thor", b"A U \xffThor"),
        (b"<a@example.org>", b"<a<@example.org>"),
        (b"\n\n", b"\n"),
        (b"\n\n", b"\r\n\r\n"),
    ])
    def test_malformed(self, old: bytes, new: bytes) -> None:
        data = small_commit().encode()
        assert old in data
        with pytest.raises(CorruptObject):
            Commit.decode(data.replace(old, new, 1))

    def test_error_names_the_object(self) -> None:
        with pytest.raises(CorruptObject, match=ONE_OID.hex):
            Commit.decode(b"tree x\n\n", ONE_OID)


# -- chunk lists --------------------------------------------------------------------------


class TestChunkList:
    @FAST
    @given(chunk_lists)
    def test_encode_decode_identity(self, chunks: ChunkList) -> None:
        data = chunks.encode()
        assert len(data) == 1 + 36 * len(chunks.chunks)
        assert ChunkList.decode(data) == chunks
        assert ChunkList.decode(data).size == sum(c.size for c in chunks.chunks)

    @FAST
    @given(st.binary(max_size=200))
    def test_garbage_is_corrupt_or_canonical(self, data: bytes) -> None:
        accepted_is_canonical(ChunkList.decode, data)

    @FAST
    @given(mutated(chunk_lists.map(ChunkList.encode)))
    def test_mutations_are_corrupt_or_canonical(self, data: bytes) -> None:
        accepted_is_canonical(ChunkList.decode, data)

    @FAST
    @given(chunk_lists)
    def test_truncation_at_every_byte(self, chunks: ChunkList) -> None:
        data = chunks.encode()
        for cut in range(len(data)):
            whole, rest = divmod(cut - 1, 36)
            if cut >= 1 + 2 * 36 and rest == 0:
                assert ChunkList.decode(data[:cut]).chunks == chunks.chunks[:whole]
            else:
                with pytest.raises(CorruptObject):
                    ChunkList.decode(data[:cut])

    def test_every_bit_flip(self) -> None:
        chunks = ChunkList.from_pairs([(ONE_OID, 1), (ONE_OID, 2)])
        data = chunks.encode()
        outcomes = [accepted_is_canonical(ChunkList.decode, flipped)
                    for _bit, flipped in bit_flips(data)]
        # The version byte's 8 flips are refused, and so are the flips that zero a size
        # (bit 0 of size 1, bit 1 of size 2); every other flip is another valid list.
        assert outcomes[:8] == [None] * 8
        assert outcomes.count(None) == 10

    @pytest.mark.parametrize("data", [
        b"", b"\x00", b"\x02" + bytes(72), b"\x01",
        b"\x01" + bytes(32) + b"\x00\x00\x00\x01",  # one chunk
        b"\x01" + (bytes(32) + b"\x00\x00\x00\x01") * 2 + b"\x00",  # trailing byte
        b"\x01" + bytes(32) + b"\x00\x00\x00\x01" + bytes(32) + b"\x00\x00\x00\x00",  # size 0
    ])
    def test_malformed(self, data: bytes) -> None:
        with pytest.raises(CorruptObject):
            ChunkList.decode(data)

    @pytest.mark.parametrize("pairs", [[], [(ONE_OID, 1)], [(ONE_OID, 1), (ONE_OID, 0)],
                                       [(ONE_OID, 1), (ONE_OID, 2**32)]])
    def test_encoder_refuses_invalid_lists(self, pairs: list) -> None:
        with pytest.raises(ValueError):
            ChunkList.from_pairs(pairs).encode()

    def test_error_names_the_object(self) -> None:
        with pytest.raises(CorruptObject, match=ONE_OID.hex):
            ChunkList.decode(b"\x01", ONE_OID)
