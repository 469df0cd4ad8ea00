"""Validation of native batch lines (OpenAI batch input, Anthropic batch requests,
Gemini Batch Mode lines).

One function per provider turns a parsed JSON object into a `ParsedRequest` or a list
of `LineError`s naming the field. Used by the CLI, the Python API and the quote, so a
line is judged the same way wherever it comes from.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from batchtop.errors import EnqueueError, LineError
from batchtop.providers.limits import (
    ANTHROPIC,
    ANTHROPIC_CUSTOM_ID,
    ANTHROPIC_ENDPOINT,
    CAPS,
    GEMINI,
    GEMINI_ENDPOINT,
    GEMINI_KEY_MAX,
    OPENAI,
    OPENAI_CUSTOM_ID_MAX,
    OPENAI_ENDPOINTS,
    PROVIDERS,
)

MAX_REPORTED = 20
BOM = "\ufeff"
_OPENAI_KEYS = frozenset({"custom_id", "method", "url", "body"})
_ANTHROPIC_KEYS = frozenset({"custom_id", "params"})
_GEMINI_KEYS = frozenset({"key", "request", "model"})
_GEMINI_MODEL_PREFIX = "models/"
_MODEL_OPTIONAL = {"/v1/moderations": "omni-moderation-latest"}


@dataclass(slots=True)
class ParsedRequest:
    """A valid request, ready to store: `line` is the native line to send as is."""

    provider: str
    endpoint: str
    model: str
    custom_id: str
    line: str
    bytes: int
    source: str
    lineno: int
    body: dict[str, Any] | None = field(default=None, compare=False, repr=False)
    """The parsed part the provider bills (OpenAI `body`, Anthropic `params`, Gemini
    `request`), kept so
    the enqueue estimate does not parse the line a second time."""


class _Problems:
    """Collects errors for one input; reports the first MAX_REPORTED and counts the rest."""

    def __init__(self) -> None:
        self.errors: list[LineError] = []
        self.more = 0

    def add(self, error: LineError) -> None:
        if len(self.errors) < MAX_REPORTED:
            self.errors.append(error)
        else:
            self.more += 1

    def raise_if_any(self) -> None:
        if self.errors:
            raise EnqueueError(self.errors, self.more)


def _type_name(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )


_PLAIN_FIELD = re.compile(r"[A-Za-z0-9_.\-\[\]]+")


def field_name(key: str) -> str:
    """A key as it can be shown in an error: plain names as they are, anything else
    (empty, control characters, escapes) quoted, so input never writes to the terminal."""
    return key if _PLAIN_FIELD.fullmatch(key) else ascii(key)


class _RepeatedKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(f"key {ascii(key)} is repeated")
        self.key = key


def _no_repeats(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """Reject a repeated key: we would read the last value while a provider may read the first."""
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _RepeatedKey(key)
            seen.add(key)
    return obj


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


_STRICT = json.JSONDecoder(object_pairs_hook=_no_repeats, parse_constant=_no_constant)


def loads(text: str) -> Any:
    """Strict JSON (raises ValueError or RecursionError): no NaN/Infinity, and no
    repeated key in a line where "custom_id", "key" or "model" (what results are matched and
    buffered by) appears twice; a repeated key elsewhere is inside the user's own
    body, for the provider to judge. orjson parses the common line; anything it
    refuses goes through the standard parser, so a bad line gets the precise error."""
    if text.count('"custom_id"') > 1 or text.count('"model"') > 1 or text.count('"key"') > 1:
        return _STRICT.decode(text)
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return _STRICT.decode(text)


def new_custom_id() -> str:
    return f"bt_{uuid.uuid4().hex}"


def parse_object(
    obj: Any, source: str, lineno: int, raw: str | None, provider: str | None = None, model: str | None = None
) -> ParsedRequest | list[LineError]:
    """Validate one decoded line. `raw` is its text, kept verbatim when it needs no change.
    `model` is the model for Gemini lines that do not name theirs (`enqueue --model`)."""

    def err(field: str, message: str) -> list[LineError]:
        return [LineError(source, lineno, field, message)]

    if not isinstance(obj, dict):
        return err("", f"a line must be a JSON object, not {_type_name(obj)}")
    if provider is None:
        if "params" in obj:
            provider = ANTHROPIC
        elif "body" in obj or "url" in obj:
            provider = OPENAI
        elif "request" in obj:
            provider = GEMINI
        else:
            return err(
                "",
                "cannot tell the provider: an OpenAI line has 'url' and 'body', an Anthropic line has 'params',"
                " a Gemini line has 'request'",
            )
    elif provider not in PROVIDERS:
        return err("", f"unknown provider {provider!r} (one of {', '.join(PROVIDERS)})")
    if provider == OPENAI:
        return _parse_openai(obj, source, lineno, raw)
    if provider == GEMINI:
        return _parse_gemini(obj, source, lineno, raw, model)
    return _parse_anthropic(obj, source, lineno, raw)


def _custom_id(obj: dict[str, Any], source: str, lineno: int, provider: str) -> tuple[str | None, list[LineError]]:
    if "custom_id" not in obj or obj["custom_id"] is None:
        return None, []
    cid = obj["custom_id"]
    if not isinstance(cid, str):
        return None, [LineError(source, lineno, "custom_id", f"must be a string, not {_type_name(cid)}")]
    if not cid.isascii():
        try:
            cid.encode()
        except UnicodeEncodeError:
            return None, [LineError(source, lineno, "custom_id", f"{ascii(cid[:80])} is not valid Unicode (a lone surrogate)")]
    if provider == ANTHROPIC and not ANTHROPIC_CUSTOM_ID.fullmatch(cid):
        return None, [
            LineError(source, lineno, "custom_id", f"{cid[:80]!r} does not match Anthropic's ^[a-zA-Z0-9_-]{{1,64}}$")
        ]
    if provider == OPENAI and not (0 < len(cid) <= OPENAI_CUSTOM_ID_MAX):
        return None, [LineError(source, lineno, "custom_id", f"must be 1 to {OPENAI_CUSTOM_ID_MAX} characters")]
    return cid, []


def _finish(
    provider: str,
    endpoint: str,
    model: str,
    cid: str | None,
    obj: dict[str, Any],
    raw: str | None,
    source: str,
    lineno: int,
) -> ParsedRequest | list[LineError]:
    id_field = "key" if provider == GEMINI else "custom_id"
    for name, value in (("model", model), (id_field, cid)):
        if value is not None and "\x00" in value:
            # no provider takes one, and PostgreSQL cannot store one in text: refused here, on either store
            return [LineError(source, lineno, name, f"{ascii(value[:80])} holds a NUL character (\\u0000)")]
    if cid is None:
        cid = new_custom_id()
        # the generated id replaces an explicit null too, and goes first as users write it
        obj = {id_field: cid, **{k: v for k, v in obj.items() if k != id_field}}
        raw = None
    line = raw if raw is not None else json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    try:
        size = len(line.encode()) + 1
    except UnicodeEncodeError:
        return [LineError(source, lineno, "", "holds a lone surrogate escape (such as \\ud800): not valid Unicode")]
    cap = CAPS[provider].max_bytes
    if size > cap:
        return [LineError(source, lineno, "", f"line is {size:,} bytes, over the {provider} batch cap of {cap:,}")]
    billed = obj.get({ANTHROPIC: "params", GEMINI: "request"}.get(provider, "body"))
    return ParsedRequest(provider, endpoint, model, cid, line, size, source, lineno, billed if isinstance(billed, dict) else None)


def _parse_openai(obj: dict[str, Any], source: str, lineno: int, raw: str | None) -> ParsedRequest | list[LineError]:
    # Fast path for the common, valid line (enqueue speed is measured): the same rules
    # as below, checked without building any error; anything unusual takes the slow path.
    cid = obj.get("custom_id")
    url = obj.get("url")
    body = obj.get("body")
    if (
        raw is not None
        and type(cid) is str
        and cid.isascii()
        and 0 < len(cid) <= OPENAI_CUSTOM_ID_MAX
        and obj.get("method") == "POST"
        and len(obj) == 4
        and type(body) is dict
        and type(url) is str
    ):
        needed = OPENAI_ENDPOINTS.get(url)
        model = body.get("model")
        if (
            needed == "messages"
            and type(model) is str
            and model
            and not body.get("stream")
            and type(body.get("messages")) is list
            and body["messages"]
            and "\x00" not in model
            and "\x00" not in cid
        ):
            size = (len(raw) if raw.isascii() else len(raw.encode())) + 1
            if size <= CAPS[OPENAI].max_bytes:
                return ParsedRequest(OPENAI, url, model, cid, raw, size, source, lineno, body)
    return _parse_openai_slow(obj, source, lineno, raw)


def _parse_openai_slow(obj: dict[str, Any], source: str, lineno: int, raw: str | None) -> ParsedRequest | list[LineError]:
    errors: list[LineError] = []
    extra = sorted(set(obj) - _OPENAI_KEYS)
    if extra:
        errors.append(LineError(source, lineno, field_name(extra[0]), "unknown key in an OpenAI batch line (custom_id, method, url, body)"))
    cid, cid_errors = _custom_id(obj, source, lineno, OPENAI)
    errors += cid_errors
    method = obj.get("method")
    if method != "POST":
        errors.append(
            LineError(source, lineno, "method", "missing" if method is None else f"must be \"POST\", not {method!r}")
        )
    url = obj.get("url")
    if not isinstance(url, str):
        errors.append(LineError(source, lineno, "url", "missing" if url is None else "must be a string"))
        url = None
    elif url not in OPENAI_ENDPOINTS:
        errors.append(
            LineError(source, lineno, "url", f"{url!r} is not an endpoint the batch API takes ({', '.join(OPENAI_ENDPOINTS)})")
        )
        url = None
    body = obj.get("body")
    model: Any = None
    if not isinstance(body, dict):
        errors.append(LineError(source, lineno, "body", "missing" if body is None else f"must be an object, not {_type_name(body)}"))
    else:
        model = body.get("model", _MODEL_OPTIONAL.get(url or ""))
        if not isinstance(model, str) or not model:
            errors.append(LineError(source, lineno, "body.model", "missing" if model is None else "must be a non-empty string"))
        if body.get("stream"):
            errors.append(LineError(source, lineno, "body.stream", "streaming is not allowed in a batch"))
        if url is not None:
            needed = OPENAI_ENDPOINTS[url]
            if needed not in body:
                errors.append(LineError(source, lineno, f"body.{needed}", f"missing (required by {url})"))
            elif needed == "messages" and (not isinstance(body["messages"], list) or not body["messages"]):
                errors.append(LineError(source, lineno, "body.messages", "must be a non-empty array"))
    if errors:
        return errors
    assert url is not None and isinstance(model, str)
    return _finish(OPENAI, url, model, cid, obj, raw, source, lineno)


def _parse_anthropic(obj: dict[str, Any], source: str, lineno: int, raw: str | None) -> ParsedRequest | list[LineError]:
    errors: list[LineError] = []
    extra = sorted(set(obj) - _ANTHROPIC_KEYS)
    if extra:
        errors.append(LineError(source, lineno, field_name(extra[0]), "unknown key in an Anthropic batch line (custom_id, params)"))
    cid, cid_errors = _custom_id(obj, source, lineno, ANTHROPIC)
    errors += cid_errors
    params = obj.get("params")
    model: Any = None
    if not isinstance(params, dict):
        errors.append(
            LineError(source, lineno, "params", "missing" if params is None else f"must be an object, not {_type_name(params)}")
        )
    else:
        model = params.get("model")
        if not isinstance(model, str) or not model:
            errors.append(LineError(source, lineno, "params.model", "missing" if model is None else "must be a non-empty string"))
        max_tokens = params.get("max_tokens")
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
            errors.append(
                LineError(source, lineno, "params.max_tokens", "missing" if max_tokens is None else "must be a positive integer")
            )
        messages = params.get("messages")
        if not isinstance(messages, list) or not messages:
            errors.append(
                LineError(source, lineno, "params.messages", "missing" if messages is None else "must be a non-empty array")
            )
        if params.get("stream"):
            errors.append(LineError(source, lineno, "params.stream", "streaming is not allowed in a batch"))
    if errors:
        return errors
    assert isinstance(model, str)
    return _finish(ANTHROPIC, ANTHROPIC_ENDPOINT, model, cid, obj, raw, source, lineno)


def _parse_gemini(
    obj: dict[str, Any], source: str, lineno: int, raw: str | None, default_model: str | None
) -> ParsedRequest | list[LineError]:
    """A Gemini Batch Mode line, `{"key": ..., "request": {GenerateContentRequest}}`, with
    the model beside them (`"model"`) or given for the whole input. `key` is the
    custom_id. The request is the API's own JSON, in either field spelling it takes
    (`generationConfig` or `generation_config`): only what every request needs is
    checked here, the rest is the provider's to judge, per request."""
    errors: list[LineError] = []
    extra = sorted(set(obj) - _GEMINI_KEYS)
    if extra:
        errors.append(LineError(source, lineno, field_name(extra[0]), "unknown key in a Gemini batch line (key, request, model)"))
    cid: str | None = None
    key = obj.get("key")
    if key is not None:
        if not isinstance(key, str) or not key:
            errors.append(LineError(source, lineno, "key", f"must be a non-empty string, not {_type_name(key)}"))
        elif len(key) > GEMINI_KEY_MAX:
            errors.append(LineError(source, lineno, "key", f"must be 1 to {GEMINI_KEY_MAX} characters"))
        else:
            try:
                key.encode()
                cid = key
            except UnicodeEncodeError:
                errors.append(LineError(source, lineno, "key", f"{ascii(key[:80])} is not valid Unicode (a lone surrogate)"))
    model: Any = obj.get("model", default_model)
    named_in_line = "model" in obj
    if not isinstance(model, str) or not model.removeprefix(_GEMINI_MODEL_PREFIX):
        message = "missing: give it in the line or with --model" if model is None else "must be a non-empty string"
        errors.append(LineError(source, lineno, "model", message))
    request = obj.get("request")
    if not isinstance(request, dict):
        errors.append(
            LineError(source, lineno, "request", "missing" if request is None else f"must be an object, not {_type_name(request)}")
        )
    else:
        contents = request.get("contents")
        if not isinstance(contents, list) or not contents:
            errors.append(LineError(source, lineno, "request.contents", "missing" if contents is None else "must be a non-empty array"))
        if "model" in request and request["model"] not in (None, model, f"{_GEMINI_MODEL_PREFIX}{model}"):
            errors.append(LineError(source, lineno, "request.model", "differs from the line's model: a batch runs one model"))
    if errors:
        return errors
    assert isinstance(model, str) and isinstance(request, dict)
    bare = model.removeprefix(_GEMINI_MODEL_PREFIX)
    if not named_in_line or model != bare:
        # the stored line names its model (the adapter creates the batch for it), bare
        obj = {**obj, "model": bare}
        raw = None
    return _finish(GEMINI, GEMINI_ENDPOINT, bare, cid, obj, raw, source, lineno)


def iter_parsed(
    lines: Iterable[tuple[str, int, bytes | str]],
    provider: str | None = None,
    *,
    model: str | None = None,
    seen: dict[tuple[str, str], tuple[str, int]] | None = None,
    chunk_size: int = 4096,
) -> Iterator[list[ParsedRequest]]:
    """Validate every line of an input, yielding valid requests in chunks.

    `lines` yields (source, line number, text); blank lines are skipped, and a line's
    CR/LF ending and a leading byte-order mark are dropped. Once a line is
    bad no more chunks are yielded, but validation goes on to the end so that every
    problem is reported, and then EnqueueError is raised: a caller that stores chunks
    as they come must do so in a transaction it rolls back on that error. A custom_id
    repeated within the input (per provider) is an error on the later line; `seen`
    maps (provider, custom_id) to where each was found.
    """
    problems = _Problems()
    seen = {} if seen is None else seen
    chunk: list[ParsedRequest] = []
    for source, lineno, text in lines:
        if isinstance(text, bytes):
            try:
                text = text.decode()
            except UnicodeDecodeError as exc:
                problems.add(LineError(source, lineno, "", f"not UTF-8 text ({exc.reason} at byte {exc.start})"))
                continue
        # CRLF endings and a UTF-8 byte-order mark (Windows editors and exports; one per
        # file, so a concatenation has one per part) are not part of the line: the
        # provider is sent the clean JSON
        text = text.strip().removeprefix(BOM).lstrip()
        if not text:
            continue
        try:
            obj = loads(text)
        except _RepeatedKey as exc:
            problems.add(LineError(source, lineno, field_name(exc.key), "repeated in the line: give each key once"))
            continue
        except ValueError as exc:
            problems.add(LineError(source, lineno, "", f"not valid JSON ({exc})"))
            continue
        except RecursionError:
            problems.add(LineError(source, lineno, "", "nested too deeply to be a batch request"))
            continue
        result = parse_object(obj, source, lineno, text, provider, model)
        if isinstance(result, list):
            for error in result:
                problems.add(error)
            continue
        key = (result.provider, result.custom_id)
        first = seen.get(key)
        if first is not None:
            problems.add(
                LineError(source, lineno, "custom_id", f"{result.custom_id!r} is repeated (first at {first[0]}:{first[1]})")
            )
            continue
        seen[key] = (source, lineno)
        if not problems.errors:
            chunk.append(result)
            if len(chunk) >= chunk_size:
                yield chunk
                chunk = []
    problems.raise_if_any()
    if chunk:
        yield chunk


def parse_lines(
    lines: Iterable[tuple[str, int, bytes | str]], provider: str | None = None, model: str | None = None
) -> list[ParsedRequest]:
    """Validate a whole (small) input: all valid requests, or EnqueueError naming each bad line."""
    return [r for chunk in iter_parsed(lines, provider, model=model) for r in chunk]


def numbered_lines(source: str, stream: Iterable[bytes]) -> Iterator[tuple[str, int, bytes]]:
    for lineno, raw in enumerate(stream, 1):
        yield source, lineno, raw
