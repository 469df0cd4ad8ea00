"""The declared config table holds itself to account: every key has a doc, a default its
own parser accepts, and a wrong type for it is an error naming the file and the key.
So a key added with one `setting(...)` line is checked like the others from the start."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from batchtop.config import (
    BufferOverride,
    Config,
    ConfigError,
    Context,
    FlushPolicy,
    parse_config,
    sections,
    settings_of,
)

PATH = Path("/etc/batchtop/config.toml")


def _declared() -> list[tuple[str, str, type, dataclasses.Field[Any]]]:
    """(section, shape, class, field) for every declared key."""
    out = []
    for name, sec in sections().items():
        if sec.cls is None:
            continue
        for f in dataclasses.fields(sec.cls):
            if "setting" in f.metadata:
                out.append((name, sec.shape, sec.cls, f))
    return out


def _doc(section: str, shape: str, key: str, value: object) -> tuple[dict[str, Any], str]:
    """A config document setting one key, and the key path its error must name."""
    if shape == "array":
        entry = {key: value}
        if section == "webhooks":  # the required keys, so that the one under test is the fault
            entry = {"url": "https://h.example/", "secret_env": "S", **entry}
        return {section: [entry]}, f"{section}[0].{key}"
    if shape == "per_provider":
        return {section: {"openai": {key: value}}}, f"{section}.openai.{key}"
    return {section: {key: value}}, f"{section}.{key}"


def test_every_section_is_declared() -> None:
    assert set(sections()) == {f.name for f in dataclasses.fields(Config)} - {"path"}
    assert parse_config({}) == Config()


@pytest.mark.parametrize(("section", "shape", "cls", "f"), _declared(), ids=lambda v: getattr(v, "name", None))
def test_each_key_has_a_doc_and_a_default_its_parser_accepts(section: str, shape: str, cls: type, f: dataclasses.Field[Any]) -> None:
    spec = f.metadata["setting"]
    assert spec.doc.strip(), f"{section}.{f.name} has no doc"
    if f.default is dataclasses.MISSING:
        assert spec.required, f"{section}.{f.name}: a key without a default says what is missing"
    elif f.default is not None:
        toml = list(f.default) if isinstance(f.default, tuple) else f.default
        assert spec.parse(toml, Context(None)) == f.default


@pytest.mark.parametrize(("section", "shape", "cls", "f"), _declared(), ids=lambda v: getattr(v, "name", None))
def test_a_wrong_type_names_the_file_and_the_key(section: str, shape: str, cls: type, f: dataclasses.Field[Any]) -> None:
    doc, key = _doc(section, shape, f.name, {"not": "a value of any key"})
    with pytest.raises(ConfigError) as info:
        parse_config(doc, PATH)
    assert str(info.value).startswith(f"{PATH}: key '{key}': "), str(info.value)


@pytest.mark.parametrize("key", list(settings_of(FlushPolicy)))
def test_a_buffer_takes_every_flush_key(key: str) -> None:
    default = getattr(FlushPolicy(), key)
    value = default if isinstance(default, int) else f"{int(default)}s"
    (buffer,) = parse_config({"buffers": [{"model": "m", key: value}]}).buffers
    assert buffer == BufferOverride(model="m", values={key: default})
    assert parse_config({"buffers": [{"model": "m", key: value}]}).policy_for("openai", "/v1/chat/completions", "m") == FlushPolicy()
