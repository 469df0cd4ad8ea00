"""Output validation: a result whose text is not the JSON a buffer asked for is a failure.

A `[[buffers]]` entry may say `output = "json"` (the model's text must parse as JSON)
or `output_schema = "schema.json"` (and satisfy that JSON Schema); `output = "text"`
turns a broader entry's check off. The engine calls `validate_output` on each
successful result and treats a message back as a failed attempt (to resubmit).
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from batchtop.providers import registry

if TYPE_CHECKING:
    from batchtop.config import Config

MAX_MESSAGE = 300
MAX_SCHEMA_BYTES = 1 << 20
"""A JSON Schema is a few kilobytes; the cap keeps a path to a device or a huge file
(output_schema = "/dev/zero" read until memory ran out) from taking the process down."""


class SchemaFileError(OSError):
    """The schema path is not a readable, small, regular file."""


def read_schema(path: Path) -> Any:
    """The parsed JSON of a schema file: a regular file of at most MAX_SCHEMA_BYTES,
    opened without blocking (a FIFO would wait for a writer for ever). Raises
    SchemaFileError/OSError when it cannot be read, ValueError when it is not JSON."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise SchemaFileError(f"cannot read {path} ({exc.strerror})") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise SchemaFileError(f"{path} is not a regular file")
        if info.st_size > MAX_SCHEMA_BYTES:
            raise SchemaFileError(f"{path} is larger than {MAX_SCHEMA_BYTES // 1024} KiB")
        raw = os.read(fd, MAX_SCHEMA_BYTES + 1)
    finally:
        os.close(fd)
    if len(raw) > MAX_SCHEMA_BYTES:  # it grew since the fstat
        raise SchemaFileError(f"{path} is larger than {MAX_SCHEMA_BYTES // 1024} KiB")
    return json.loads(raw.decode("utf-8"))


@dataclass(frozen=True)
class OutputRule:
    kind: str  # "json" | "text"
    schema_path: Path | None = None


def output_rule(config: Config, provider: str, endpoint: str, model: str) -> OutputRule | None:
    """The rule of the last matching `[[buffers]]` entry that sets output or output_schema."""
    rule: OutputRule | None = None
    for entry in config.buffers:
        if not entry.matches(provider, endpoint, model):
            continue
        if entry.output_schema is not None:
            rule = OutputRule("json", entry.output_schema)
        elif entry.output is not None:
            rule = OutputRule(entry.output)
    return rule


def output_text(provider: str, endpoint: str, body: dict[str, Any]) -> tuple[str | None, str | None]:
    """(the model's text, or None if there is none; a reason when there is none), as
    the provider's spec reads its response shape (`ProviderSpec.result_text`).

    Endpoints without a text output (embeddings, ...) give (None, None): nothing to check.
    """
    return registry.get(provider).result_text(endpoint, body)


@lru_cache(maxsize=64)
def _validator(path: Path, mtime_ns: int) -> Any:
    """A compiled validator per schema file version (jsonschema imported only when used)."""
    from jsonschema import validators  # type: ignore[import-untyped]

    schema = read_schema(path)
    cls = validators.validator_for(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def _short(text: str) -> str:
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 3] + "..."


def check_text(rule: OutputRule, text: str) -> str | None:
    """The problem with `text` under `rule`, or None."""
    if rule.kind != "json":
        return None
    try:
        doc = json.loads(text)
    except ValueError as exc:
        return f"output is not valid JSON ({exc})"
    if rule.schema_path is None:
        return None
    from jsonschema.exceptions import best_match  # type: ignore[import-untyped]

    try:
        validator = _validator(rule.schema_path, rule.schema_path.stat().st_mtime_ns)
    except (OSError, ValueError) as exc:
        return f"cannot use output schema {rule.schema_path}: {exc}"
    error = best_match(validator.iter_errors(doc))
    if error is None:
        return None
    where = f" at {error.json_path}" if error.path else ""
    return _short(f"output does not match {rule.schema_path.name}{where}: {error.message}")


def validate_output(
    config: Config, provider: str, endpoint: str, model: str, response_body: dict[str, Any]
) -> str | None:
    """Why this successful response's output is unacceptable to its buffer, or None.

    `response_body` is the chat completion / response / Anthropic message object (a
    whole result line is accepted too). None when no rule applies or the output passes.
    """
    rule = output_rule(config, provider, endpoint, model)
    if rule is None or rule.kind != "json":
        return None
    text, missing = output_text(provider, endpoint, response_body)
    if text is None:
        return f"no JSON output: {missing}" if missing else None
    problem = check_text(rule, text.strip())
    if problem is not None and registry.get(provider).truncated(response_body):
        problem += " (the output was cut short at the token limit)"
    return problem
