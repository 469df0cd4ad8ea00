"""Enqueueing files: read every input, validate all of it, then store it in one go."""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

from batchtop.errors import BatchtopError
from batchtop.intake.validation import iter_parsed
from batchtop.store import BufferKey, Store


def _lines(inputs: Sequence[str], stdin: BinaryIO | None) -> Iterator[tuple[str, int, bytes]]:
    for name in inputs:
        if name == "-":
            stream = stdin if stdin is not None else sys.stdin.buffer
            for lineno, raw in enumerate(stream, 1):
                yield "<stdin>", lineno, raw
            continue
        try:
            handle = Path(name).open("rb")
        except OSError as exc:
            raise BatchtopError(f"{name}: cannot read ({exc.strerror})") from None
        with handle:
            for lineno, raw in enumerate(handle, 1):
                yield name, lineno, raw


def enqueue_files(
    store: Store,
    inputs: Sequence[str],
    *,
    provider: str | None = None,
    deadline: float | None = None,
    stdin: BinaryIO | None = None,
    model: str | None = None,
    tier: str | None = None,
) -> dict[BufferKey, int]:
    """All lines of all inputs, or none: validation covers every file before anything is stored.
    `model` is the model of Gemini lines that do not name theirs."""
    seen: dict[tuple[str, str], tuple[str, int]] = {}
    parsed = iter_parsed(_lines(inputs, stdin), provider, seen=seen, model=model)
    return store.enqueue_chunks(parsed, seen=seen, deadline=deadline, tier=tier)
