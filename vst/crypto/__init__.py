"""Client-side encryption: KEKs, keyrings, envelopes and the record AEAD.

    records.py   RecordCipher: seal/open one object's bytes (the hot path)
    kek.py       X25519Kek, PassphraseKek, CommandKek, KdfParams: what opens envelopes
    envelope.py  Envelope, wrap, unwrap: a keyring secret wrapped for one KEK
    keyring.py   Keyring, new_keyring, KeyringFile: keys/<name>.toml

The names below are importable from ``vst.crypto``; each module is imported on first use,
so reading records does not load the X25519/scrypt machinery, and importing ``vst.crypto``
loads nothing until a name is used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vst.crypto.envelope import Envelope as Envelope
    from vst.crypto.envelope import open_request as open_request
    from vst.crypto.envelope import request_bytes as request_bytes
    from vst.crypto.envelope import unwrap as unwrap
    from vst.crypto.envelope import wrap as wrap
    from vst.crypto.kek import DEFAULT_KDF as DEFAULT_KDF
    from vst.crypto.kek import MIN_KDF as MIN_KDF
    from vst.crypto.kek import CommandKek as CommandKek
    from vst.crypto.kek import KdfParams as KdfParams
    from vst.crypto.kek import PassphraseKek as PassphraseKek
    from vst.crypto.kek import X25519Kek as X25519Kek
    from vst.crypto.keyring import Keyring as Keyring
    from vst.crypto.keyring import KeyringFile as KeyringFile
    from vst.crypto.keyring import new_keyring as new_keyring
    from vst.crypto.records import OVERHEAD as OVERHEAD
    from vst.crypto.records import USAGE_LIMIT as USAGE_LIMIT
    from vst.crypto.records import AuthenticationFailed as AuthenticationFailed
    from vst.crypto.records import RecordCipher as RecordCipher
    from vst.crypto.records import UsageLimit as UsageLimit

_HOME = {
    "RecordCipher": "records", "AuthenticationFailed": "records", "UsageLimit": "records",
    "OVERHEAD": "records", "USAGE_LIMIT": "records",
    "X25519Kek": "kek", "PassphraseKek": "kek", "CommandKek": "kek", "KdfParams": "kek",
    "DEFAULT_KDF": "kek", "MIN_KDF": "kek",
    "Envelope": "envelope", "wrap": "envelope", "unwrap": "envelope",
    "request_bytes": "envelope", "open_request": "envelope",
    "Keyring": "keyring", "KeyringFile": "keyring", "new_keyring": "keyring",
}

__all__ = sorted(_HOME)


def __getattr__(name: str) -> Any:
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module 'vst.crypto' has no attribute '{name}'")
    return getattr(importlib.import_module(f"vst.crypto.{module}"), name)
