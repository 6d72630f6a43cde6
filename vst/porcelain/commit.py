"""``vst commit``: snapshot the whole working copy as a new commit of its collection.

The order keeps every crash harmless: new contents, trees and the commit object go through
one writer and are durable once it closes; only then does the collection's head move by
compare-and-swap from the working copy's base, and only then does the working copy record
its new base and stat cache. A crash before the ref moves leaves unreferenced packs; one
after leaves a working copy whose base is behind its own commit, which ``status`` reports
and ``pull`` mends (the files are already the commit's, so it is a fast-forward).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from vst.errors import RefConflict
from vst.objects.commit import Signature
from vst.objects.oid import Oid
from vst.plumbing.commit_tree import commit_tree
from vst.plumbing.diff_tree import Change
from vst.plumbing.snapshot import remove_temporaries, scan, write_trees
from vst.porcelain.hooks import Hooks
from vst.porcelain.status import (
    iter_working_changes,
    load_cache,
    refresh_cache,
    working_changes,
)
from vst.store import Store
from vst.workdir import StatCache, WorkingCopy

Warn = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class CommitResult:
    commit: Oid | None  # None: nothing to commit (or a dry run)
    parent: Oid | None
    counts: Counter[str]  # changes by status letter (A, M, D, T)
    read_bytes: int  # content read (files the stat cache could not vouch for)
    new_bytes: int  # sealed bytes of new objects stored
    changing: list[bytes]  # files that changed while they were read
    # The changes themselves for a dry run only: a first commit of a million files would
    # otherwise hold a million of them to print four numbers.
    changes: list[Change] = field(default_factory=list)
    # Replication: the packs this commit wrote or reused that have fewer copies than the
    # collection's policy asks (a volume was down), that policy, and why volumes were out.
    short_packs: int = 0
    policy: str = ""
    copies: int = 0
    unavailable: dict[str, str] = field(default_factory=dict)

    def count(self, status: str) -> int:
        return self.counts[status]


def commit(store: Store, copy: WorkingCopy, message: bytes | None, *, author: Signature,
           committer: Signature, hooks: Hooks, dry_run: bool = False,
           allow_empty: bool = False, warn: Warn = lambda _: None,
           on_bytes: Callable[[int], None] | None = None) -> CommitResult:
    with copy.lock("commit"):
        base = copy.base()
        head = store.read_ref(copy.collection)
        if head != base:
            raise _moved(copy, base, head)
        if not dry_run:
            hooks.pre("pre-commit")
        started = time.time_ns()
        cache = load_cache(store, copy)
        # One writer for the whole commit: contents, trees and the commit object share
        # packs, and none of it is durable until the writer closes, before the ref moves.
        with store.writer(copy.collection) as writer:
            # The keyring is opened when the scan first needs it: not at all when nothing
            # changed.
            snapshot = scan(store, copy.root, cache, writer=None if dry_run else writer,
                            sealing=lambda: writer.sealing, warn=warn, on_bytes=on_bytes)
            remove_temporaries(copy.root, snapshot)
            # Counted one at a time: a first commit of a million files would otherwise hold
            # a million changes (and their tree entries) to print four numbers.
            changes = working_changes(cache.entries, snapshot.entries) if dry_run else []
            counts = Counter(change.status for change in (
                changes if dry_run else iter_working_changes(cache.entries, snapshot.entries)))
            result = CommitResult(None, base, counts, snapshot.read_bytes, snapshot.new_bytes,
                                  snapshot.changing, changes)
            del changes
            if dry_run or (not counts and not allow_empty):
                refresh_cache(copy, cache, snapshot, started)  # what was read need not be
                return result                                  # read again
            tree = write_trees(writer, snapshot)
            text = hooks.edit_message("commit-msg", message or default_message(result))
            oid = commit_tree(store, tree, [base] if base else [], text,
                              author=author, committer=committer, writer=writer)
            new_bytes = writer.bytes_written
        summary = text.split(b"\n", 1)[0].decode(errors="replace")
        try:
            store.update_ref(copy.collection, oid, base, committer=committer,
                             message=f"commit: {summary}")
        except RefConflict:
            raise _moved(copy, base, store.read_ref(copy.collection)) from None
        copy.set_base(oid)
        copy.save_cache(StatCache(oid, snapshot.entries), started)
    hooks.post("post-commit")
    placement = writer.placement
    return CommitResult(oid, base, counts, snapshot.read_bytes, new_bytes, snapshot.changing,
                        short_packs=len(writer.short), policy=placement.policy,
                        copies=placement.copies, unavailable=placement.unavailable)


def _moved(copy: WorkingCopy, base: Oid | None, head: Oid | None) -> RefConflict:
    were = base.short() if base else "no commit"
    now = head.short() if head else "no commit"
    return RefConflict(f"collection '{copy.collection}' has moved on: its head is {now}, "
                       f"this working copy is based on {were}",
                       hint="run 'vst pull' to bring in the other commits, then commit again")


def default_message(result: CommitResult) -> bytes:
    parts = [f"{result.count(s)} {word}" for s, word in
             (("A", "added"), ("M", "modified"), ("D", "deleted"), ("T", "type changed"))
             if result.count(s)]
    return ("Snapshot: " + (", ".join(parts) if parts else "no changes") + "\n").encode()
