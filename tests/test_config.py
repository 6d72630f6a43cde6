"""Layered config: precedence of the global, store and local files, set/get/unset/list in
each layer, typed values, the store's allow-list and its meta/ mirror, malformed files, and
`vst config` on the command line (output, --json, exit codes, default layer, identity)."""

from __future__ import annotations

import datetime as dt
import json
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
from clirun import Ran, vst_run

from vst.config import ConfigLayers, find_working_copy, format_value, parse_value
from vst.errors import CorruptConfig, NotAStore, NotAWorkingCopy, UsageError
from vst.store import Store


@pytest.fixture
def layers(tmp_path: Path, store: Store) -> ConfigLayers:
    (tmp_path / "wc" / ".vst").mkdir(parents=True)
    return ConfigLayers(str(tmp_path / "home" / "vst" / "config.toml"), None,
                        str(tmp_path / "wc" / ".vst" / "config.toml"), store=store)


def _toml(path: Path) -> dict[str, Any]:
    return tomllib.loads(path.read_text())


# -- layering ---------------------------------------------------------------------------------


def test_most_specific_layer_wins(layers: ConfigLayers) -> None:
    assert layers.get("user.name") is None
    layers.set("global", "user.name", "Global")
    assert layers.get("user.name") == "Global"
    layers.set("store", "user.name", "Store")
    assert layers.lookup("user.name") == ("Store", "store")
    layers.set("local", "user.name", "Local")
    assert layers.lookup("user.name") == ("Local", "local")
    assert layers.get("user.name", "global") == "Global"
    assert layers.get("user.name", "store") == "Store"
    assert layers.unset("local", "user.name")
    assert layers.get("user.name") == "Store"
    assert layers.unset("store", "user.name")
    assert layers.get("user.name") == "Global"


def test_items_list_every_layer_least_specific_first(layers: ConfigLayers) -> None:
    layers.set("local", "core.hooksPath", "tools/hooks")
    layers.set("global", "user.name", "Ada")
    layers.set("global", "user.email", "ada@example.org")
    layers.set("store", "commit.sign", True)
    layers.set("global", "a.b.c", 3)
    assert layers.items() == [("user.name", "Ada", "global"),
                              ("user.email", "ada@example.org", "global"),
                              ("a.b.c", 3, "global"),
                              ("commit.sign", True, "store"),
                              ("core.hooksPath", "tools/hooks", "local")]
    assert layers.items("store") == [("commit.sign", True, "store")]


def test_files_written_are_plain_toml(layers: ConfigLayers, tmp_path: Path) -> None:
    layers.set("global", "user.name", "Ada")
    layers.set("global", "a.b.c", 3)
    assert _toml(tmp_path / "home" / "vst" / "config.toml") == \
        {"user": {"name": "Ada"}, "a": {"b": {"c": 3}}}
    assert layers.unset("global", "a.b.c")
    assert not layers.unset("global", "a.b.c")
    assert not layers.unset("global", "no.such")
    # Sections left empty go too.
    assert _toml(tmp_path / "home" / "vst" / "config.toml") == {"user": {"name": "Ada"}}


def test_another_writer_is_not_overwritten(layers: ConfigLayers, tmp_path: Path) -> None:
    """Each write starts from the file as it is now, not from what this object read."""
    path = tmp_path / "home" / "vst" / "config.toml"
    layers.set("global", "user.name", "Ada")
    assert layers.get("user.name") == "Ada"
    path.write_text(path.read_text() + '[core]\nhooksPath = "/h"\n')
    layers.set("global", "user.email", "ada@example.org")
    assert _toml(path) == {"user": {"name": "Ada", "email": "ada@example.org"},
                           "core": {"hooksPath": "/h"}}


def test_a_value_and_a_section_cannot_share_a_key(layers: ConfigLayers) -> None:
    layers.set("global", "user.name", "Ada")
    with pytest.raises(UsageError, match=r"'user\.name' is a value, not a section"):
        layers.set("global", "user.name.first", "Ada")
    layers.set("global", "a.b.c", 1)
    with pytest.raises(UsageError, match="it is a section, not a value"):
        layers.set("global", "a.b", 2)
    assert layers.get("a.b") is None  # a section is not a value
    assert not layers.unset("global", "a.b")
    assert layers.get("a.b.c") == 1


@pytest.mark.parametrize("key", ["user", "user.", ".name", "user..name", "user.na me",
                                 "user.näme", "", "user.name="])
def test_invalid_keys(layers: ConfigLayers, key: str) -> None:
    with pytest.raises(UsageError, match="invalid config key"):
        layers.get(key)
    with pytest.raises(UsageError, match="invalid config key"):
        layers.set("global", key, "x")


# -- typed values -----------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "value"), [
    ("true", True), ("false", False), ("42", 42), ("-7", -7), ("+3", 3), ("0x1f", 31),
    ("1_000", 1000), ("1.5", 1.5), ("1e3", 1000.0),
    ("True", "True"), ("yes", "yes"), ("nan", "nan"), ("inf", "inf"), ("", ""),
    ("Ada Lovelace", "Ada Lovelace"), ("1979-05-27", "1979-05-27"), ("[1, 2]", "[1, 2]"),
    ("1 # two", "1 # two"), ('"quoted"', '"quoted"'), ("007", "007"), ("1.", "1."),
])
def test_parse_value(text: str, value: Any) -> None:
    parsed = parse_value(text)
    assert parsed == value and type(parsed) is type(value)


def test_format_value() -> None:
    assert [format_value(v) for v in (True, False, 3, 1.5, "x y")] == \
        ["true", "false", "3", "1.5", "x y"]
    # Only hand-written files hold these; still one line each.
    assert format_value([1, "a", [True]]) == '[1, "a", [true]]'
    assert format_value([{"k": 1.5}]) == "[{k = 1.5}]"
    assert format_value(dt.date(2024, 5, 1)) == "2024-05-01"


def test_set_refuses_what_toml_cannot_hold(layers: ConfigLayers) -> None:
    for value in (float("nan"), None, [1]):
        with pytest.raises(UsageError):
            layers.set("global", "user.x", value)


# -- the store layer --------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["store.id", "chunking.min", "pack.target_size",
                                 "volumes.default.url", "store.format"])
@pytest.mark.parametrize("layer", ["store", "global", "local"])
def test_format_settings_are_refused_in_every_layer(layers: ConfigLayers, store: Store,
                                                    key: str, layer: str) -> None:
    before = Path(store.path, "config.toml").read_bytes()
    with pytest.raises(UsageError, match="store format setting"):
        layers.set(layer, key, 1)
    with pytest.raises(UsageError, match="store format setting"):
        layers.unset(layer, key)
    assert Path(store.path, "config.toml").read_bytes() == before


def test_store_layer_takes_only_its_allow_list(layers: ConfigLayers, store: Store) -> None:
    with pytest.raises(UsageError, match="cannot be set in the store's config"):
        layers.set("store", "alias.co", "commit")
    layers.set("global", "alias.co", "commit")  # other layers take any section
    for section in sorted(Store.USER_SECTIONS):
        layers.set("store", f"{section}.x", 1)
    assert layers.items("store") == [(f"{s}.x", 1, "store") for s in sorted(Store.USER_SECTIONS)]


def test_store_layer_shows_only_user_sections(layers: ConfigLayers) -> None:
    assert layers.items("store") == []
    assert layers.get("store.format") is None and layers.get("chunking.min") is None


def test_store_writes_are_mirrored_and_keep_the_format(layers: ConfigLayers,
                                                       store: Store) -> None:
    before = _toml(Path(store.path, "config.toml"))
    layers.set("store", "user.name", "Ada")
    after = _toml(Path(store.path, "config.toml"))
    assert after == {**before, "user": {"name": "Ada"}}
    mirror = Path(store.path, "volumes", "default", "meta", "config.toml")
    assert mirror.read_bytes() == Path(store.path, "config.toml").read_bytes()
    assert store.config["user"] == {"name": "Ada"}
    reopened = Store.open(store.path)
    assert reopened.store_id == store.store_id and reopened.config["user"]["name"] == "Ada"
    reopened.close()


def test_store_method_refuses_edits_outside_user_sections(store: Store) -> None:
    before = Path(store.path, "config.toml").read_bytes()

    def sneaky(table: dict[str, Any]) -> None:
        table["user"] = {"name": "Ada"}
        table["chunking"]["min"] = 1

    with pytest.raises(UsageError, match=r"cannot change \[chunking\]"):
        store.edit_user_config(sneaky)
    assert Path(store.path, "config.toml").read_bytes() == before
    assert "user" not in store.config


def test_store_layer_without_a_store_object(tmp_path: Path, store: Store) -> None:
    layers = ConfigLayers(None, str(Path(store.path, "config.toml")), None)
    layers.set("store", "user.email", "a@b")
    assert Store.open(store.path).config["user"] == {"email": "a@b"}


def test_writing_a_missing_layer(tmp_path: Path) -> None:
    layers = ConfigLayers(str(tmp_path / "g.toml"), None, None)
    with pytest.raises(NotAWorkingCopy):
        layers.set("local", "user.name", "x")
    with pytest.raises(NotAStore):
        layers.set("store", "user.name", "x")
    with pytest.raises(UsageError, match="unknown config layer"):
        layers.set("system", "user.name", "x")
    assert layers.get("user.name") is None


# -- malformed files --------------------------------------------------------------------------


@pytest.mark.parametrize("content", [b"[user\nname = 1", b"user.name = ", b"\xff\xfe",
                                     b"a = 1\na = 2"])
def test_malformed_toml_is_corrupt_config(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "config.toml"
    path.write_bytes(content)
    layers = ConfigLayers(str(path), None, None)
    with pytest.raises(CorruptConfig) as info:
        layers.get("user.name")
    assert info.value.exit_code == 14
    assert info.value.message.startswith(f"cannot parse '{path}': ")
    assert "\n" not in info.value.message
    with pytest.raises(CorruptConfig):
        layers.set("global", "user.name", "x")
    assert path.read_bytes() == content


# -- finding the working copy -----------------------------------------------------------------


def test_find_working_copy(tmp_path: Path) -> None:
    (tmp_path / "wc" / ".vst").mkdir(parents=True)
    (tmp_path / "wc" / "a" / "b").mkdir(parents=True)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / ".vst").write_text("a file, not a folder")
    assert find_working_copy(str(tmp_path / "wc")) == str(tmp_path / "wc")
    assert find_working_copy(str(tmp_path / "wc" / "a" / "b")) == str(tmp_path / "wc")
    assert find_working_copy(str(tmp_path / "other")) is None


@pytest.mark.skipif(sys.platform in ("darwin", "win32"), reason="platformdirs' own there")
@pytest.mark.parametrize("kind", ["config", "data", "state"])
@pytest.mark.parametrize("value", [None, "", "relative/dir", "/abs/dir", "/abs/trailing/"])
@pytest.mark.parametrize("home", ["absolute", "", "relative"])
def test_user_dir_is_what_platformdirs_gives(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                             kind: str, value: str | None, home: str) -> None:
    """vst finds its folders without importing platformdirs (a cold start's 18 ms): the same
    folders, whether the XDG variable is unset, empty, relative or absolute, and with an
    empty or relative $HOME (the account's home then)."""
    import platformdirs

    from vst.cli.app import user_dir

    variable = {"config": "XDG_CONFIG_HOME", "data": "XDG_DATA_HOME",
                "state": "XDG_STATE_HOME"}[kind]
    monkeypatch.setenv("HOME", {"absolute": str(tmp_path / "home"), "": "",
                                "relative": "some/where"}[home])
    if value is None:
        monkeypatch.delenv(variable, raising=False)
    else:
        monkeypatch.setenv(variable, value)
    assert user_dir(kind) == getattr(platformdirs, f"user_{kind}_dir")("vst")  # type: ignore[arg-type]


# -- the command line -------------------------------------------------------------------------


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str | None]:
    """XDG_CONFIG_HOME (and XDG_DATA_HOME, where the user's own store would be) in tmp_path,
    so the global file is the test's own."""
    return {"XDG_CONFIG_HOME": str(tmp_path / "xdg"), "XDG_DATA_HOME": str(tmp_path / "data"),
            "VST_AUTHOR_NAME": None,
            "VST_AUTHOR_EMAIL": None, "VST_COMMITTER_NAME": None, "VST_COMMITTER_EMAIL": None}


def _vst(env: dict[str, str | None], *args: str) -> Ran:
    return vst_run(*args, env=env)


def test_cli_set_get_unset_list(tmp_path: Path, store: Store, env: dict[str, str | None]) -> None:
    s = ("--store", store.path)
    assert _vst(env, *s, "config", "user.name", "Ada Lovelace").code == 0
    assert _toml(tmp_path / "xdg" / "vst" / "config.toml") == {"user": {"name": "Ada Lovelace"}}
    ran = _vst(env, *s, "config", "user.name")
    assert (ran.code, ran.out, ran.err) == (0, b"Ada Lovelace\n", "")
    assert _vst(env, *s, "config", "--get", "user.name").out == b"Ada Lovelace\n"
    assert _vst(env, *s, "config", "--store", "user.name", "Store Ada").code == 0
    assert _vst(env, *s, "config", "user.name").out == b"Store Ada\n"
    assert _vst(env, *s, "config", "--global", "user.name").out == b"Ada Lovelace\n"
    assert _vst(env, *s, "config", "--global", "core.retries", "3").code == 0
    ran = _vst(env, *s, "config", "--list")
    assert ran.out == b"user.name=Ada Lovelace\ncore.retries=3\nuser.name=Store Ada\n"
    assert _vst(env, *s, "config", "-l", "--store").out == b"user.name=Store Ada\n"
    ran = _vst(env, *s, "--json", "config", "--list")
    assert [json.loads(line) for line in ran.out.splitlines()] == [
        {"type": "config", "key": "user.name", "value": "Ada Lovelace", "layer": "global"},
        {"type": "config", "key": "core.retries", "value": 3, "layer": "global"},
        {"type": "config", "key": "user.name", "value": "Store Ada", "layer": "store"}]
    ran = _vst(env, *s, "--json", "config", "user.name")
    assert json.loads(ran.out) == {"type": "config", "key": "user.name", "value": "Store Ada",
                                   "layer": "store"}
    assert _vst(env, *s, "config", "--unset", "--store", "user.name").code == 0
    assert _vst(env, *s, "config", "--unset", "--store", "user.name").code == 1
    assert _vst(env, *s, "config", "user.name").out == b"Ada Lovelace\n"


def test_cli_exit_codes(tmp_path: Path, store: Store, env: dict[str, str | None]) -> None:
    s = ("--store", store.path)
    ran = _vst(env, *s, "config", "user.name")
    assert (ran.code, ran.out, ran.err) == (1, b"", "")  # like git: nothing set, no message
    assert _vst(env, "config", "--unset", "user.name").code == 1
    assert _vst(env, "config", "-l").code == 0  # an empty list is not a failure
    cases = [
        (("config",), 2),
        (("config", "user"), 2),
        (("config", "--get", "user.name", "x"), 2),
        (("config", "--list", "user.name"), 2),
        (("config", "--unset", "user.name", "x"), 2),
        ((*s, "config", "--store", "chunking.min", "1"), 2),
        ((*s, "config", "--store", "alias.x", "1"), 2),
        (("config", "--local", "user.name", "x"), 6),
        (("config", "--local", "user.name"), 6),
        (("config", "--local", "--list"), 6),
        (("config", "--store", "--list"), 10),
        (("--store", str(tmp_path / "nowhere"), "config", "--store", "user.name", "x"), 10),
    ]
    for args, code in cases:
        ran = _vst(env, *args)
        assert ran.code == code, (args, ran.err)
        lines = ran.err_lines
        assert lines[0].startswith("vst: error: ") and len(lines) <= 2, ran.err


def test_cli_corrupt_config_is_one_line_exit_14(tmp_path: Path, env: dict[str, str | None]) -> None:
    path = tmp_path / "xdg" / "vst" / "config.toml"
    path.parent.mkdir(parents=True)
    path.write_text("[user\n")
    ran = _vst(env, "config", "user.name")
    assert ran.code == 14
    assert ran.err_lines[0].startswith(f"vst: error: cannot parse '{path}': ")
    assert ran.err_lines[1:] == ["hint: fix or remove the file; it is TOML"]


def test_cli_default_layer_is_local_inside_a_working_copy(tmp_path: Path,
                                                          env: dict[str, str | None]) -> None:
    (tmp_path / "wc" / ".vst").mkdir(parents=True)
    (tmp_path / "wc" / "deep" / "er").mkdir(parents=True)
    assert _vst(env, "-C", str(tmp_path / "wc" / "deep" / "er"), "config", "user.name",
                "Local").code == 0
    assert _toml(tmp_path / "wc" / ".vst" / "config.toml") == {"user": {"name": "Local"}}
    assert not (tmp_path / "xdg" / "vst" / "config.toml").exists()
    assert _vst(env, "-C", str(tmp_path), "config", "user.name", "Global").code == 0
    assert _vst(env, "-C", str(tmp_path / "wc"), "config", "user.name").out == b"Local\n"
    assert _vst(env, "-C", str(tmp_path), "config", "user.name").out == b"Global\n"
    ran = _vst(env, "-C", str(tmp_path / "wc"), "config", "-l")
    assert ran.out == b"user.name=Global\nuser.name=Local\n"


def test_cli_values_are_typed(tmp_path: Path, env: dict[str, str | None]) -> None:
    for key, text in (("a.flag", "true"), ("a.count", "42"), ("a.ratio", "0.5"),
                      ("a.name", "42 apples")):
        assert _vst(env, "config", key, text).code == 0
    assert _toml(tmp_path / "xdg" / "vst" / "config.toml") == \
        {"a": {"flag": True, "count": 42, "ratio": 0.5, "name": "42 apples"}}
    assert _vst(env, "config", "a.flag").out == b"true\n"


def test_identity_comes_from_config_and_env_wins(tmp_path: Path, store: Store,
                                                 env: dict[str, str | None]) -> None:
    s = ("--store", store.path)
    (tmp_path / "files").mkdir()
    tree = _vst(env, *s, "write-tree", str(tmp_path / "files")).out
    assert _vst(env, *s, "config", "--global", "user.name", "Global Ada").code == 0
    assert _vst(env, *s, "config", "--global", "user.email", "g@example.org").code == 0
    assert _vst(env, *s, "config", "--store", "user.email", "s@example.org").code == 0
    ran = _vst(env, *s, "commit-tree", tree.decode().strip(), "-m", "x")
    assert ran.code == 0, ran.err
    body = _vst(env, *s, "cat-file", "-p", ran.out.decode().strip()).out.decode()
    assert "author Global Ada <s@example.org> " in body
    ran = _vst({**env, "VST_AUTHOR_NAME": "Env Ada"}, *s, "commit-tree",
               tree.decode().strip(), "-m", "y")
    body = _vst(env, *s, "cat-file", "-p", ran.out.decode().strip()).out.decode()
    assert "author Env Ada <s@example.org> " in body
    assert "committer Global Ada <s@example.org> " in body
