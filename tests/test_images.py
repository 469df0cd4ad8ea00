"""Image tokens: from the image's own dimensions and each provider's formula, not its base64."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from batchtop.config import Config
from batchtop.intake.quote import quote
from batchtop.pricing.estimate import estimate_request
from batchtop.pricing.images import (
    ANTHROPIC_ASSUMED_TOKENS,
    anthropic_image_tokens,
    dimensions,
    openai_assumed_tokens,
    openai_image_tokens,
)
from images import b64, data_url, jpeg_header, png

# The measured case: a 728x485 JPEG of about 65 KB, which characters/4 of its base64 made ~21,700 tokens.
PHOTO = jpeg_header(728, 485, exif_bytes=65_000)


def openai_body(url: str, detail: str | None = None, model: str = "gpt-4o") -> dict:
    image: dict = {"url": url} if detail is None else {"url": url, "detail": detail}
    return {
        "model": model,
        "max_tokens": 100,
        "messages": [{"role": "user", "content": [
            {"type": "text", "text": "What is in this image?"},
            {"type": "image_url", "image_url": image},
        ]}],
    }


def anthropic_params(source: dict, model: str = "claude-sonnet-4-5") -> dict:
    return {
        "model": model,
        "max_tokens": 100,
        "messages": [{"role": "user", "content": [
            {"type": "image", "source": source},
            {"type": "text", "text": "What is in this image?"},
        ]}],
    }


def test_dimensions_come_from_the_header_bytes() -> None:
    assert dimensions(b64(png(728, 485))) == (728, 485)
    assert dimensions(b64(PHOTO)) == (728, 485)  # the frame header sits past 64 KB of EXIF
    assert dimensions(b64(b"not an image at all")) is None
    assert dimensions("!!!not base64!!!") is None


@pytest.mark.parametrize(
    ("width", "height", "detail", "tokens"),
    [
        (728, 485, "high", 85 + 170 * 2),  # 2 x 1 tiles, no scaling: 425 as OpenAI bills it
        (728, 485, "auto", 425),  # auto may be high: the upper bound
        (728, 485, "low", 85),
        (1024, 1024, "high", 85 + 170 * 4),  # scaled to 768 x 768: 2 x 2 tiles (OpenAI's example)
        (2048, 4096, "high", 85 + 170 * 6),  # fit 1024 x 2048, then 768 x 1536: 2 x 3 tiles (OpenAI's example)
        (4096, 8192, "low", 85),
    ],
)
def test_openai_tile_formula(width: int, height: int, detail: str, tokens: int) -> None:
    assert openai_image_tokens(width, height, detail, "gpt-4o") == tokens


def test_openai_models_with_other_multipliers() -> None:
    assert openai_image_tokens(728, 485, "high", "gpt-4o-mini") == 2833 + 5667 * 2
    assert openai_image_tokens(728, 485, "low", "o3") == 75
    # 32 px patches for gpt-4.1-mini: 23 x 16 = 368 patches x 1.62
    assert openai_image_tokens(728, 485, "high", "gpt-4.1-mini") == 597
    assert openai_image_tokens(4096, 4096, "high", "gpt-4.1-mini") <= 1536 * 1.62 + 1
    assert openai_assumed_tokens("high", "gpt-4o") == 85 + 170 * 8
    assert openai_assumed_tokens("low", "gpt-4o") == 85


@pytest.mark.parametrize(
    ("width", "height", "tokens"),
    [
        (728, 485, 471),  # 353,080 px / 750: about 470 as Anthropic bills it
        (200, 200, 54),  # Anthropic's table: 200 x 200 is ~54 tokens
        (1092, 1092, 1590),  # the largest 1:1 image kept unscaled, ~1,590 tokens
        (4000, 3000, 1598),  # resized to 1264 x 948, about 1.2 megapixels
        (3000, 200, 218),  # long edge to 1568: 1568 x 104 = 163,072 px / 750
    ],
)
def test_anthropic_formula(width: int, height: int, tokens: int) -> None:
    assert anthropic_image_tokens(width, height) == tokens


def test_an_inlined_photo_is_estimated_by_its_size_not_its_base64() -> None:
    """Measured: a 728x485 JPEG in a data URL became about 21,700 estimated tokens."""
    url = data_url(PHOTO, "image/jpeg")
    assert len(url) / 4 > 21_000  # what characters/4 made of it
    est = estimate_request("/v1/chat/completions", openai_body(url, "high"))
    text = len(json.dumps(openai_body("", "high")["messages"], separators=(",", ":"))) - len(
        json.dumps({"type": "image_url", "image_url": {"url": "", "detail": "high"}}, separators=(",", ":")))
    assert est.images.tokens == 425 and est.images.measured == 1 and est.images.assumed == 0
    assert est.input_tokens == 425 + -(-text // 4)
    ant = estimate_request("/v1/messages", anthropic_params({"type": "base64", "media_type": "image/jpeg", "data": b64(PHOTO)}))
    assert ant.images.tokens == 471 and ant.input_tokens < 500


def test_images_by_url_get_a_fixed_labelled_estimate() -> None:
    est = estimate_request("/v1/chat/completions", openai_body("https://example.com/cat.jpg"))
    assert (est.images.tokens, est.images.measured, est.images.assumed) == (85 + 170 * 8, 0, 1)
    low = estimate_request("/v1/chat/completions", openai_body("https://example.com/cat.jpg", "low"))
    assert low.images.tokens == 85
    ant = estimate_request("/v1/messages", anthropic_params({"type": "url", "url": "https://example.com/cat.jpg"}))
    assert (ant.images.tokens, ant.images.assumed) == (ANTHROPIC_ASSUMED_TOKENS, 1)
    broken = estimate_request("/v1/chat/completions", openai_body("data:image/png;base64,AAAA"))
    assert broken.images.assumed == 1  # unreadable: assumed, never counted as text


def test_responses_input_image_and_several_images() -> None:
    part = {"type": "input_image", "image_url": data_url(png(512, 512), "image/png"), "detail": "high"}
    body = {"model": "gpt-4o", "input": [{"role": "user", "content": [part, dict(part)]}]}
    est = estimate_request("/v1/responses", body)
    assert est.images.tokens == 2 * (85 + 170) and est.images.measured == 2


def test_quote_counts_images_and_says_which_were_assumed(tmp_path: Path) -> None:
    lines = [
        {"custom_id": "p1", "method": "POST", "url": "/v1/chat/completions",
         "body": openai_body(data_url(PHOTO, "image/jpeg"), "high")},
        {"custom_id": "u1", "method": "POST", "url": "/v1/chat/completions",
         "body": openai_body("https://example.com/cat.jpg", "high")},
    ]
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    (row,) = quote([str(path)], Config())
    assert row["image_tokens"] == 425 + 1445
    assert (row["images_measured"], row["images_assumed"]) == (1, 1)
    assert row["input_tokens"] < 2_000  # not ~21,700
    # (1870 + text) x $2.50 + 200 x $10, per million, halved: under half a cent for both
    assert row["batch_usd"] < 0.0035
