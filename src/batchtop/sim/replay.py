"""Replay mode: the simulator answers with recorded result lines, byte for byte.

Real result files (recorded from the live APIs, or the providers' documented
examples) carry shapes our own fake lines never had: dated snapshot models, usage
objects with or without the cache split, extra fields. In replay mode a request
whose custom_id has a recorded line gets that line verbatim, in the output or the
error file as its status says (OpenAI) or in the results stream (Anthropic); its
outcome and the batch's counts follow from the line. Other requests are simulated
as usual.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path

from .outcomes import OK, SERVER_ERROR


def load_recorded(paths: Iterable[Path]) -> dict[str, bytes]:
    """The recorded lines of JSONL files, keyed by their custom_id (one line each)."""
    lines: dict[str, bytes] = {}
    for path in paths:
        for number, raw in enumerate(Path(path).read_bytes().splitlines(), 1):
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw)
            except ValueError as exc:
                raise ValueError(f"{path}:{number}: not a JSON result line ({exc})") from None
            custom_id = obj.get("custom_id") if isinstance(obj, dict) else None
            if not isinstance(custom_id, str) or custom_id in lines:
                raise ValueError(f"{path}:{number}: a recorded line needs a custom_id of its own")
            lines[custom_id] = raw
    return lines


def recorded_outcome(provider: str, line: bytes) -> int:
    """0 for a recorded success, else an error status (HTTP status where the line has one)."""
    obj = json.loads(line)
    if provider == "anthropic":
        return OK if (obj.get("result") or {}).get("type") == "succeeded" else SERVER_ERROR
    response = obj.get("response") or {}
    status = response.get("status_code") if isinstance(response, dict) else None
    if obj.get("error") is None and status == 200:
        return OK
    return status if isinstance(status, int) and status >= 400 else SERVER_ERROR


def replayed(recorded: Mapping[str, bytes] | None, custom_id: str) -> bytes | None:
    """The recorded line for a custom_id, if replaying one."""
    return recorded.get(custom_id) if recorded else None
