"""``vst init``: make a folder the working copy of a new collection."""

from __future__ import annotations

import os
import re

from vst.errors import AlreadyExists, UsageError, from_os_error
from vst.porcelain.collection import collection_create
from vst.store import Store, check_collection_name
from vst.workdir import WorkingCopy

_NOT_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def collection_name_for(folder: str) -> str:
    """A collection name from a folder's name: 'My Photos' -> 'My-Photos'."""
    base = os.path.basename(os.path.abspath(folder)) or "root"
    name = _NOT_NAME.sub("-", base).lstrip(".-")[:100].rstrip("-")
    if not name:
        raise UsageError(f"cannot make a collection name from the folder name '{base}'",
                         hint="name it with -c NAME")
    return name


def init(store: Store, store_url: str, root: str, collection: str | None = None, *,
         encrypt: bool = True, keyring: str | None = None) -> WorkingCopy:
    """Create the collection (named after ``root`` unless given; encrypted unless not
    ``encrypt``, see collection_create) and make ``root``, created if missing, its working
    copy. Files already in ``root`` are what the first commit adds."""
    name = check_collection_name(collection or collection_name_for(root))
    existing = WorkingCopy.find(root) if os.path.isdir(root) else None
    if existing is None and not os.path.isdir(root):
        existing = WorkingCopy.find(os.path.dirname(os.path.abspath(root)))
    if existing is not None:
        # A working copy inside another would put its files in both collections.
        where = "is already" if existing.root == os.path.abspath(root) else "is inside"
        raise AlreadyExists(f"'{os.path.abspath(root)}' {where} a working copy of "
                            f"'{existing.collection}' ({existing.root})")
    if store.has_collection(name):
        raise AlreadyExists(f"collection '{name}' already exists",
                            hint=f"to work on it, clone it: vst clone {name} [DIR]; "
                                 "or name a new one with -c NAME")
    try:
        os.makedirs(root, exist_ok=True)
    except OSError as exc:
        raise from_os_error(exc, f"cannot create '{root}'") from exc
    collection_create(store, name, encrypt=encrypt, keyring=keyring)
    return WorkingCopy.create(root, store_url, name, None)
