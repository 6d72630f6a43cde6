"""Replication policies: which volumes must hold a collection's packs, and how many copies.

A policy lives in the store's config.toml::

    [policies.two-disks]
    volumes = ["default", "usb"]   # in order of preference for new copies
    copies = 2

and a collection names its policy in ``collections/NAME.toml`` (``policy = "two-disks"``).
A collection that names none follows ``default``. Unless config.toml defines ``default``
itself, it is every volume of the store with a copy on each, so a store with one disk needs
no set-up and a volume added later is part of it.
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple

from vst.errors import CorruptConfig, UsageError

DEFAULT_POLICY = "default"
_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,99}\Z")


class Policy(NamedTuple):
    name: str
    volumes: tuple[str, ...]  # volume names, in order of preference for new copies
    copies: int
    implicit: bool = False  # the built-in default, not written in config.toml


def check_name(name: str, what: str) -> str:
    """``name`` if it is a valid name of a volume or policy (``what``); UsageError else."""
    if not _NAME_RE.match(name) or ".." in name:
        raise UsageError(f"invalid {what} name '{name}'",
                         hint="use letters, digits, '.', '_' and '-', starting with a letter, "
                              "digit or '_'")
    return name


def check_policy_name(name: str) -> str:
    return check_name(name, "policy")


def policy_problem(volumes: tuple[str, ...], copies: int, known: tuple[str, ...]) -> str | None:
    """Why ``volumes`` and ``copies`` do not make a policy over the volumes ``known``."""
    if not volumes:
        return "a policy needs at least one volume"
    if len(set(volumes)) != len(volumes):
        return "a volume is listed twice"
    unknown = [name for name in volumes if name not in known]
    if unknown:
        return f"no volume named '{unknown[0]}'"
    if not 1 <= copies <= len(volumes):
        return f"copies must be between 1 and {len(volumes)} (the number of volumes listed)"
    return None


def parse_policies(config: dict[str, Any], volume_names: tuple[str, ...],
                   config_name: str) -> dict[str, Policy]:
    """The policies of ``config``, with the implicit default when none is called that."""
    table = config.get("policies", {})
    if not isinstance(table, dict):
        raise CorruptConfig(f"'{config_name}': policies must be a table")
    policies = {}
    for name, entry in sorted(table.items()):
        if not isinstance(entry, dict) or not _NAME_RE.match(name):
            raise CorruptConfig(f"'{config_name}': policy '{name}' is not a valid table")
        volumes, copies = entry.get("volumes"), entry.get("copies")
        if not isinstance(volumes, list) or not all(isinstance(v, str) for v in volumes) \
                or not isinstance(copies, int) or isinstance(copies, bool):
            raise CorruptConfig(f"'{config_name}': policy '{name}' needs a list of volumes "
                                "and a number of copies")
        problem = policy_problem(tuple(volumes), copies, volume_names)
        if problem:
            raise CorruptConfig(f"'{config_name}': policy '{name}': {problem}")
        policies[name] = Policy(name, tuple(volumes), copies)
    if DEFAULT_POLICY not in policies:
        policies[DEFAULT_POLICY] = Policy(DEFAULT_POLICY, volume_names, len(volume_names),
                                          implicit=True)
    return policies
