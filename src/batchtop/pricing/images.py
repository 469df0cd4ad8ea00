"""Input tokens of the images in a request, by each provider's documented formula.

An inlined image is a few hundred tokens to the provider but tens of thousands of
characters of base64 to a characters/4 guess: a 728x485 JPEG was estimated at about
21,700 tokens where OpenAI bills 425 and Anthropic about 470, and that guess tripped a
budget cap. So an image's tokens come from its own width and height, read from its
header bytes (`imagesize`, no decoding), and its base64 is not counted as text.

- OpenAI (tile models, gpt-4o and kin): `detail: low` is the base tokens alone; `high`
  (and `auto`, which may be high: an upper bound) scales the image to fit 2048x2048,
  then its shortest side down to 768, and adds the tile tokens per 512 px tile:
  85 + 170 x tiles for gpt-4o. Models OpenAI documents with other multipliers
  (gpt-4o-mini, the o-series) or with 32 px patches (gpt-4.1-mini/nano, o4-mini,
  gpt-5-mini/nano) use theirs.
- Anthropic: width x height / 750 tokens, after its resize rule (long edge at most
  1568 px and about 1.15 megapixels, aspect kept), so at most about 1,600.
- Gemini: 258 tokens for an image of at most 384 px on both sides, else 258 per
  768x768 tile it is cut into (ai.google.dev token docs, as remembered: not checked
  against a live count); an image given by `fileData` is assumed 4 tiles.
- An image given by URL (or one whose size cannot be read) is not fetched: it gets a
  fixed estimate, the largest the provider bills for one image, and is counted apart
  so that the estimate can say how many images were assumed rather than measured.
"""

from __future__ import annotations

import base64
import binascii
import io
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from batchtop.providers.limits import ANTHROPIC, GEMINI

# -- OpenAI ------------------------------------------------------------------------------

_TILE = 512
_FIT, _SHORT_SIDE = 2048, 768
_TILE_TOKENS: dict[str, tuple[int, int]] = {  # family -> (base, per tile)
    "gpt-4o-mini": (2833, 5667),
    "o1": (75, 150),
    "o1-pro": (75, 150),
    "o3": (75, 150),
}
_DEFAULT_TILE_TOKENS = (85, 170)
_PATCH, _MAX_PATCHES = 32, 1536
_PATCH_MULTIPLIER: dict[str, float] = {
    "gpt-4.1-mini": 1.62,
    "gpt-4.1-nano": 2.46,
    "gpt-5-mini": 1.62,
    "gpt-5-nano": 2.46,
    "o4-mini": 1.72,
}
OPENAI_LARGEST_TILES = 8
"""Tiles of the largest image after scaling (2048x768): what an unmeasured image is assumed."""

# -- Anthropic ---------------------------------------------------------------------------

_LONG_EDGE = 1568
_PIXELS_PER_TOKEN = 750
_MAX_TOKENS = 1600
ANTHROPIC_ASSUMED_TOKENS = _MAX_TOKENS
"""An unmeasured image is assumed as large as Anthropic bills one: about 1,600 tokens."""

_HEAD_CHARS = 64 * 1024
"""Base64 characters decoded to find the dimensions (48 KiB: past a JPEG's EXIF block)."""


@dataclass(frozen=True, slots=True)
class ImageTokens:
    """The images of one request: their tokens, and how many were measured or assumed."""

    tokens: int = 0
    measured: int = 0
    assumed: int = 0
    chars: int = 0
    """JSON characters of the image parts, which the text estimate must leave out."""

    def __add__(self, other: ImageTokens) -> ImageTokens:
        return ImageTokens(self.tokens + other.tokens, self.measured + other.measured,
                           self.assumed + other.assumed, self.chars + other.chars)


def dimensions(b64: str) -> tuple[int, int] | None:
    """(width, height) of base64 image data, from its header bytes; None if unreadable."""
    import imagesize

    for text in (b64[: _HEAD_CHARS - _HEAD_CHARS % 4], b64):
        try:
            data = base64.b64decode(text[: len(text) - len(text) % 4])
            width, height = imagesize.get(io.BytesIO(data))
        except (binascii.Error, ValueError, OSError):
            continue
        if width > 0 and height > 0:
            return int(width), int(height)
        if len(text) == len(b64):
            break
    return None


def _data_url_payload(url: str) -> str | None:
    """The base64 data of a `data:image/...;base64,` URL, else None (a URL to fetch)."""
    if not url.startswith("data:"):
        return None
    head, sep, data = url.partition(",")
    return data if sep and head.endswith(";base64") else None


def _scaled(width: int, height: int, scale: float) -> tuple[int, int]:
    return max(1, math.floor(width * scale)), max(1, math.floor(height * scale))


def openai_image_tokens(width: int, height: int, detail: str, family: str | None) -> int:
    """Tokens OpenAI bills for one image of this size at this detail, for this model family."""
    if family in _PATCH_MULTIPLIER:
        patches = math.ceil(width / _PATCH) * math.ceil(height / _PATCH)
        if patches > _MAX_PATCHES:
            scale = math.sqrt(_PATCH * _PATCH * _MAX_PATCHES / (width * height))
            w, h = width * scale / _PATCH, height * scale / _PATCH
            scale *= min(math.floor(w) / w, math.floor(h) / h)
            sw, sh = _scaled(width, height, scale)
            patches = min(math.ceil(sw / _PATCH) * math.ceil(sh / _PATCH), _MAX_PATCHES)
        return math.ceil(patches * _PATCH_MULTIPLIER[family])
    base, per_tile = _TILE_TOKENS.get(family or "", _DEFAULT_TILE_TOKENS)
    if detail == "low":
        return base
    w, h = width, height
    if max(w, h) > _FIT:
        w, h = _scaled(w, h, _FIT / max(w, h))
    if min(w, h) > _SHORT_SIDE:
        w, h = _scaled(w, h, _SHORT_SIDE / min(w, h))
    return base + per_tile * math.ceil(w / _TILE) * math.ceil(h / _TILE)


def openai_assumed_tokens(detail: str, family: str | None) -> int:
    """An OpenAI image whose size is not known: the most one image is billed."""
    if family in _PATCH_MULTIPLIER:
        return math.ceil(_MAX_PATCHES * _PATCH_MULTIPLIER[family])
    base, per_tile = _TILE_TOKENS.get(family or "", _DEFAULT_TILE_TOKENS)
    return base if detail == "low" else base + per_tile * OPENAI_LARGEST_TILES


def anthropic_image_tokens(width: int, height: int) -> int:
    """Tokens Anthropic bills for one image: width x height / 750 after its resize rule."""
    scale = min(1.0, _LONG_EDGE / max(width, height),
                math.sqrt(_MAX_TOKENS * _PIXELS_PER_TOKEN / (width * height)))
    w, h = _scaled(width, height, scale) if scale < 1 else (width, height)
    return min(math.ceil(w * h / _PIXELS_PER_TOKEN), _MAX_TOKENS)


# -- finding the images in a body ---------------------------------------------------------


def _parts(value: Any) -> Iterator[dict[str, Any]]:
    """Every dict nested in `value`, without recursion (bodies may nest deeply)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            yield item
            stack.extend(v for v in item.values() if isinstance(v, (dict, list)))
        elif isinstance(item, list):
            stack.extend(v for v in item if isinstance(v, (dict, list)))


def _openai_image(part: dict[str, Any]) -> tuple[str, str] | None:
    """(url, detail) of a chat `image_url` part or a responses `input_image` part."""
    kind = part.get("type")
    if kind == "image_url":
        ref = part.get("image_url")
        url, detail = (ref.get("url"), ref.get("detail")) if isinstance(ref, dict) else (ref, None)
    elif kind == "input_image":
        url, detail = part.get("image_url"), part.get("detail")
    else:
        return None
    if not isinstance(url, str):
        url = ""  # a file_id or nothing: measured as unknown
    return url, detail if isinstance(detail, str) else "auto"


def _anthropic_image(part: dict[str, Any]) -> str | None:
    """The base64 data of an Anthropic `image` block ("" when given by URL or file)."""
    if part.get("type") != "image":
        return None
    source = part.get("source")
    if isinstance(source, dict) and source.get("type") == "base64" and isinstance(source.get("data"), str):
        return source["data"]
    return ""


GEMINI_IMAGE_TOKENS = 258
_GEMINI_SMALL, _GEMINI_TILE = 384, 768
GEMINI_ASSUMED_TILES = 4
"""Tiles an unmeasured Gemini image (fileData, unreadable data) is assumed: a 1536x1536 image."""


def gemini_image_tokens(width: int, height: int) -> int:
    if width <= _GEMINI_SMALL and height <= _GEMINI_SMALL:
        return GEMINI_IMAGE_TOKENS
    return GEMINI_IMAGE_TOKENS * math.ceil(width / _GEMINI_TILE) * math.ceil(height / _GEMINI_TILE)


def _gemini_image(part: dict[str, Any]) -> str | None:
    """The base64 data of a Gemini `inlineData` image part ("" for a `fileData` image)."""
    for inline, file in (("inlineData", "fileData"), ("inline_data", "file_data")):
        blob = part.get(inline)
        if isinstance(blob, dict) and str(blob.get("mimeType", blob.get("mime_type", ""))).startswith("image/"):
            data = blob.get("data")
            return data if isinstance(data, str) else ""
        ref = part.get(file)
        if isinstance(ref, dict) and str(ref.get("mimeType", ref.get("mime_type", ""))).startswith("image/"):
            return ""
    return None


def _json_chars(value: Any) -> int:
    import json

    return len(json.dumps(value, ensure_ascii=False, separators=(",", ":")))


def image_tokens(provider: str, family: str | None, value: Any) -> ImageTokens:
    """The images anywhere in `value` (a body field such as `messages` or `input`)."""
    total = ImageTokens()
    for part in _parts(value):
        if provider == GEMINI:
            blob = _gemini_image(part)
            if blob is None:
                continue
            size = dimensions(blob) if blob else None
            tokens = gemini_image_tokens(*size) if size else GEMINI_IMAGE_TOKENS * GEMINI_ASSUMED_TILES
        elif provider == ANTHROPIC:
            data = _anthropic_image(part)
            if data is None:
                continue
            size = dimensions(data) if data else None
            tokens = anthropic_image_tokens(*size) if size else ANTHROPIC_ASSUMED_TOKENS
        else:
            found = _openai_image(part)
            if found is None:
                continue
            url, detail = found
            payload = _data_url_payload(url)
            size = dimensions(payload) if payload else None
            tokens = openai_image_tokens(*size, detail, family) if size else openai_assumed_tokens(detail, family)
        total += ImageTokens(tokens, int(size is not None), int(size is None), _json_chars(part))
    return total
