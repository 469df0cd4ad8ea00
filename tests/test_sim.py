"""The provider simulator, checked through the real ``openai`` and ``anthropic`` SDKs.

Every client is built with ``_strict_response_validation=True`` so a JSON object
that does not match the SDK's types fails the test; JSONL lines (never validated
by the SDKs) are validated here line by line with the SDK models. Time is a
:class:`ManualClock` moved with ``sim.advance``; nothing sleeps.
"""

from __future__ import annotations

import asyncio
import http.client
import io
import json
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest
from anthropic.types import ErrorResponse
from anthropic.types.messages import MessageBatch, MessageBatchIndividualResponse
from openai.types import Batch, Completion, CreateEmbeddingResponse, FileObject
from openai.types.chat import ChatCompletion
from openai.types.responses import Response

from batchtop.sim import ManualClock, SimConfig, Simulator

T0 = 1_760_000_000.0
CHAT = "/v1/chat/completions"


# ---------------------------------------------------------------- fixtures


@pytest.fixture
def make_sim() -> Iterator[Callable[..., Simulator]]:
    """``make_sim(**knobs)``: a started simulator on a manual clock (per_request_s=0 by default)."""
    sims: list[Simulator] = []

    def make(**knobs: Any) -> Simulator:
        sim = Simulator(SimConfig(**{"per_request_s": 0.0, **knobs}), clock=ManualClock(T0))
        sims.append(sim.start())
        return sim

    yield make
    for sim in sims:
        sim.stop()


@pytest.fixture
def sim(make_sim: Callable[..., Simulator]) -> Simulator:
    return make_sim()


@pytest.fixture
def clients() -> Iterator[list[Any]]:
    made: list[Any] = []
    yield made
    for client in made:
        client.close()


@pytest.fixture
def oai(clients: list[Any]) -> Callable[..., openai.OpenAI]:
    def make(sim: Simulator, *, api_key: str = "test-key", max_retries: int = 0, **kw: Any) -> openai.OpenAI:
        client = openai.OpenAI(
            base_url=sim.openai_base_url, api_key=api_key, max_retries=max_retries,
            _strict_response_validation=True, **kw,
        )
        clients.append(client)
        return client

    return make


@pytest.fixture
def ant(clients: list[Any]) -> Callable[..., anthropic.Anthropic]:
    def make(sim: Simulator, *, api_key: str | None = "test-key", max_retries: int = 0, **kw: Any) -> anthropic.Anthropic:
        client = anthropic.Anthropic(
            base_url=sim.anthropic_base_url, api_key=api_key, max_retries=max_retries,
            _strict_response_validation=True, **kw,
        )
        clients.append(client)
        return client

    return make


# ---------------------------------------------------------------- helpers


def oline(cid: str, *, url: str = CHAT, model: str = "gpt-4o-mini", body: dict[str, Any] | None = None) -> dict[str, Any]:
    if body is None:
        body = {
            CHAT: {"model": model, "messages": [{"role": "user", "content": f"question {cid}"}]},
            "/v1/embeddings": {"model": model, "input": f"text of {cid}"},
            "/v1/responses": {"model": model, "input": f"question {cid}"},
            "/v1/completions": {"model": model, "prompt": f"question {cid}", "max_tokens": 300},
        }[url]
    return {"custom_id": cid, "method": "POST", "url": url, "body": body}


def jsonl(lines: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(line).encode() + b"\n" for line in lines)


def upload(client: openai.OpenAI, lines: list[dict[str, Any]]) -> FileObject:
    return client.files.create(file=("in.jsonl", jsonl(lines)), purpose="batch")


def submit(client: openai.OpenAI, lines: list[dict[str, Any]], *, endpoint: str = CHAT, **kw: Any) -> Batch:
    f = upload(client, lines)
    return client.batches.create(input_file_id=f.id, endpoint=endpoint, completion_window="24h", **kw)  # type: ignore[arg-type]


def read_lines(client: openai.OpenAI, file_id: str | None) -> list[dict[str, Any]]:
    if file_id is None:
        return []
    text = client.files.content(file_id).text
    assert "\n\n" not in text and (not text or text.endswith("\n"))
    return [json.loads(line) for line in text.splitlines()]


def areq(cid: str, *, max_tokens: int = 64, model: str = "claude-sonnet-4-5", **params: Any) -> dict[str, Any]:
    return {
        "custom_id": cid,
        "params": {"model": model, "max_tokens": max_tokens, "messages": [{"role": "user", "content": f"hi {cid}"}], **params},
    }


def raw_results(client: anthropic.Anthropic, batch_id: str) -> list[MessageBatchIndividualResponse]:
    """Result lines as sent, each validated strictly (the SDK's own decoder does not)."""
    with client.messages.batches.with_streaming_response.results(batch_id) as resp:
        lines = list(resp.iter_lines())
    assert lines and all(line.strip() for line in lines)
    return [MessageBatchIndividualResponse.model_validate(json.loads(line)) for line in lines]


def assert_openai_error_line(line: dict[str, Any]) -> None:
    assert set(line) == {"id", "custom_id", "response", "error"}
    if line["response"] is None:
        assert set(line["error"]) >= {"code", "message"}
    else:
        assert line["error"] is None
        assert line["response"]["status_code"] >= 400
        err = line["response"]["body"]["error"]
        assert set(err) == {"message", "type", "param", "code"}
        assert isinstance(err["message"], str) and err["message"]


# ================================================================ OpenAI files


def test_file_upload_is_multipart_and_round_trips(sim: Simulator, oai: Callable[..., openai.OpenAI]) -> None:
    client = oai(sim)
    data = jsonl([oline("a"), oline("b")])
    f = client.files.create(file=("requests.jsonl", data), purpose="batch")

    upload_req = sim.requests(method="POST", path="/v1/files")[-1]
    assert upload_req.headers["content-type"].startswith("multipart/form-data; boundary=")
    assert upload_req.status == 200
    assert f.object == "file" and f.id.startswith("file-")
    assert (f.filename, f.purpose, f.bytes, f.status) == ("requests.jsonl", "batch", len(data), "processed")
    assert f.created_at == int(T0)
    assert f.expires_at == int(T0) + 30 * 86400  # purpose=batch files expire after 30 days by default

    assert client.files.retrieve(f.id) == f
    content = client.files.content(f.id)
    assert content.content == data
    assert sim.requests(path=f"/v1/files/{f.id}/content")[-1].headers["accept"] == "application/binary"
    with client.files.with_streaming_response.content(f.id) as resp:
        assert b"".join(resp.iter_bytes()) == data

    deleted = client.files.delete(f.id)
    assert (deleted.id, deleted.object, deleted.deleted) == (f.id, "file", True)
    for call in (client.files.retrieve, client.files.content, client.files.delete):
        with pytest.raises(openai.NotFoundError) as info:
            call(f.id)
        assert info.value.type == "invalid_request_error"


def test_a_request_is_logged_before_its_response_reaches_the_client(sim: Simulator) -> None:
    """The log holds a request as soon as its answer starts, streamed bodies included.
    The entry used to be written once the handler had sent the whole body, so a fast
    client could read a file and look for its request before it was logged (the
    IndexError of test_file_upload_is_multipart_and_round_trips under load). Here the
    client stops after the first chunk of 64 MB, while the server is still sending."""
    big = sim.state.add_file("big.jsonl", "batch", b"x" * (64 << 20))
    conn = http.client.HTTPConnection("127.0.0.1", sim.port, timeout=30)
    try:
        conn.request("GET", f"/v1/files/{big['id']}/content", headers={"Authorization": "Bearer k"})
        resp = conn.getresponse()
        assert resp.status == 200 and resp.read(65536)
        (record,) = sim.requests(path=f"/v1/files/{big['id']}/content")
        assert (record.method, record.status) == ("GET", 200)
    finally:
        conn.close()


def test_file_upload_forms(sim: Simulator, oai: Callable[..., openai.OpenAI], tmp_path: Path) -> None:
    client = oai(sim)
    path = tmp_path / "from-disk.jsonl"
    path.write_bytes(jsonl([oline("p")]))
    assert client.files.create(file=path, purpose="batch").filename == "from-disk.jsonl"
    assert client.files.create(file=b"{}\n", purpose="batch").filename == "upload"
    with path.open("rb") as handle:
        assert client.files.create(file=handle, purpose="batch").filename == "from-disk.jsonl"

    f = client.files.create(file=path, purpose="batch", expires_after={"anchor": "created_at", "seconds": 3600})
    assert f.expires_at == f.created_at + 3600
    # Upload purposes that FileObject.purpose can echo back are accepted.
    for purpose in ("assistants", "batch", "fine-tune", "vision", "user_data"):
        assert client.files.create(file=b"x", purpose=purpose).purpose == purpose  # type: ignore[arg-type]

    with pytest.raises(openai.BadRequestError) as info:
        client.files.create(file=b"x", purpose="nonsense")  # type: ignore[arg-type]
    assert info.value.param == "purpose"
    with pytest.raises(openai.BadRequestError):
        client.files.create(file=b"x", purpose="batch", expires_after={"anchor": "created_at", "seconds": 10})


class NonSeekable(io.RawIOBase):
    """A stream with no length and no seek, so the SDK must send it chunked."""

    name = "streamed.jsonl"

    def __init__(self, data: bytes) -> None:
        self._buf = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def readinto(self, buffer: Any) -> int:
        chunk = self._buf.read(min(len(buffer), 4096))
        buffer[: len(chunk)] = chunk
        return len(chunk)


def test_chunked_upload_of_non_seekable_stream(sim: Simulator, oai: Callable[..., openai.OpenAI]) -> None:
    client = oai(sim)
    data = jsonl([oline(f"r{i}") for i in range(2000)])
    f = client.files.create(file=NonSeekable(data), purpose="batch")
    headers = sim.requests(method="POST", path="/v1/files")[-1].headers
    assert headers.get("transfer-encoding") == "chunked" and "content-length" not in headers
    assert (f.bytes, f.filename) == (len(data), "streamed.jsonl")
    assert client.files.content(f.id).content == data
    batch = client.batches.create(input_file_id=f.id, endpoint=CHAT, completion_window="24h")
    assert client.batches.retrieve(batch.id).request_counts.total == 2000  # type: ignore[union-attr]

    # A stream cannot be replayed, so a faulted chunked upload is not retried (and nothing is stored).
    sim.config.fault_rate = 1.0
    sim.clear_log()
    with pytest.raises((openai.RateLimitError, openai.InternalServerError)):
        oai(sim, max_retries=2).files.create(file=NonSeekable(data), purpose="batch")
    assert len(sim.request_log) == 1 and sim.request_log[0].fault
    sim.config.fault_rate = 0.0
    assert [f.id for f in client.files.list(purpose="batch")] == [f.id]


def test_file_list_newest_first_with_paging_and_purpose_filter(sim: Simulator, oai: Callable[..., openai.OpenAI]) -> None:
    client = oai(sim)
    ids = [client.files.create(file=b"x", purpose="batch").id for _ in range(5)]
    other = client.files.create(file=b"y", purpose="user_data").id

    assert [f.id for f in client.files.list()] == [other, *reversed(ids)]
    sim.clear_log()
    paged = [f.id for f in client.files.list(limit=2, purpose="batch")]
    assert paged == list(reversed(ids))
    queries = [r.query for r in sim.requests(path="/v1/files")]
    assert len(queries) == 3 and queries[1]["after"] == ids[3]
    assert [f.id for f in client.files.list(order="asc", purpose="batch")] == ids
    first = client.files.list(limit=2)
    assert first.has_more is True and len(first.data) == 2


# ================================================================ OpenAI batches


def test_batch_lifecycle_timestamps_counts_and_usage(make_sim: Callable[..., Simulator], oai: Callable[..., openai.OpenAI]) -> None:
    sim = make_sim(validate_s=5, per_request_s=1, finalize_s=2)
    client = oai(sim)
    lines = [oline(f"r{i}") for i in range(4)]
    batch = submit(client, lines, metadata={"job": "nightly", "owner": "ops"})
    assert sim.requests(method="POST", path="/v1/batches")[-1].headers["content-type"] == "application/json"
    assert batch.status == "validating"
    assert batch.metadata == {"job": "nightly", "owner": "ops"}
    assert (batch.endpoint, batch.completion_window, batch.created_at) == (CHAT, "24h", int(T0))
    assert batch.expires_at == int(T0) + 86400
    assert batch.request_counts is not None and batch.request_counts.total == 4
    assert batch.output_file_id is None and batch.in_progress_at is None

    sim.advance(5 + 1.5)
    b = client.batches.retrieve(batch.id)
    assert b.status == "in_progress" and b.in_progress_at == int(T0) + 5
    assert b.request_counts is not None and (b.request_counts.completed, b.request_counts.failed) == (1, 0)
    assert b.usage is not None and b.usage.input_tokens > 0 and b.usage.output_tokens > 0

    sim.advance(3)
    b = client.batches.retrieve(batch.id)
    assert b.status == "finalizing" and b.finalizing_at == int(T0) + 9 and b.output_file_id is None

    sim.advance(2)
    b = client.batches.retrieve(batch.id)
    assert b.status == "completed" and b.completed_at == int(T0) + 11
    assert b.in_progress_at <= b.finalizing_at <= b.completed_at  # type: ignore[operator]
    assert b.failed_at is b.expired_at is b.cancelled_at is b.cancelling_at is None
    assert b.model == "gpt-4o-mini" and b.errors is None
    assert b.request_counts is not None and b.request_counts.model_dump() == {"total": 4, "completed": 4, "failed": 0}
    assert b.error_file_id is None and b.output_file_id is not None

    out_file = client.files.retrieve(b.output_file_id)
    assert out_file.purpose == "batch_output"
    out = read_lines(client, b.output_file_id)
    assert len(out) == b.request_counts.completed
    assert sorted(line["custom_id"] for line in out) == [f"r{i}" for i in range(4)]
    assert b.usage is not None
    assert b.usage.input_tokens == sum(line["response"]["body"]["usage"]["prompt_tokens"] for line in out)
    assert b.usage.output_tokens == sum(line["response"]["body"]["usage"]["completion_tokens"] for line in out)
    assert b.usage.total_tokens == b.usage.input_tokens + b.usage.output_tokens
    # The same state is visible through the test helpers.
    assert sim.batch(b.id)["status"] == "completed" and sim.batch(b.id)["metadata"] == {"job": "nightly", "owner": "ops"}


def test_batch_create_request_and_validation(sim: Simulator, oai: Callable[..., openai.OpenAI]) -> None:
    client = oai(sim)
    f = upload(client, [oline("a")])
    b = client.batches.create(
        input_file_id=f.id, endpoint=CHAT, completion_window="24h",
        output_expires_after={"anchor": "created_at", "seconds": 7200},
    )
    out = client.files.retrieve(client.batches.retrieve(b.id).output_file_id)  # type: ignore[arg-type]
    assert out.expires_at == out.created_at + 7200

    with pytest.raises(openai.BadRequestError) as info:
        client.batches.create(input_file_id="file-missing", endpoint=CHAT, completion_window="24h")
    assert info.value.param == "input_file_id"
    with pytest.raises(openai.BadRequestError):
        client.batches.create(input_file_id=f.id, endpoint=CHAT, completion_window="48h")  # type: ignore[arg-type]
    with pytest.raises(openai.BadRequestError):
        client.batches.create(input_file_id=f.id, endpoint=CHAT, completion_window="24h", metadata={str(i): "v" for i in range(17)})
    not_batch = client.files.create(file=jsonl([oline("a")]), purpose="user_data")
    with pytest.raises(openai.BadRequestError):
        client.batches.create(input_file_id=not_batch.id, endpoint=CHAT, completion_window="24h")
    with pytest.raises(openai.NotFoundError):
        client.batches.retrieve("batch_nope")
    with pytest.raises(openai.NotFoundError):
        client.batches.cancel("batch_nope")


@pytest.mark.parametrize(
    ("endpoint", "model", "check"),
    [
        (CHAT, ChatCompletion, lambda body: body.usage.prompt_tokens > 0 and body.usage.completion_tokens > 0),
        ("/v1/responses", Response, lambda body: body.usage.input_tokens > 0 and body.usage.output_tokens > 0),
        ("/v1/embeddings", CreateEmbeddingResponse, lambda body: body.usage.prompt_tokens > 0 and body.data),
        ("/v1/completions", Completion, lambda body: body.usage.prompt_tokens > 0 and body.usage.completion_tokens > 0),
    ],
)
def test_output_lines_validate_against_sdk_models(
    make_sim: Callable[..., Simulator], oai: Callable[..., openai.OpenAI], endpoint: str, model: Any, check: Any
) -> None:
    sim = make_sim(shuffle_results=True, cached_input_share=0.5, cache_write_share=0.25)
    client = oai(sim)
    ids = [f"req-{i}" for i in range(12)]
    b = client.batches.retrieve(submit(client, [oline(c, url=endpoint) for c in ids], endpoint=endpoint).id)
    assert b.status == "completed" and b.request_counts is not None
    out = read_lines(client, b.output_file_id)
    assert len(out) == b.request_counts.completed == 12
    assert sorted(line["custom_id"] for line in out) == sorted(ids)
    assert len({line["id"] for line in out}) == 12
    for line in out:
        assert set(line) == {"id", "custom_id", "response", "error"} and line["error"] is None
        assert line["response"]["status_code"] == 200 and line["response"]["request_id"]
        body = model.model_validate(line["response"]["body"])
        assert check(body), line


def test_list_batches_newest_first_and_auto_paginates(sim: Simulator, oai: Callable[..., openai.OpenAI]) -> None:
    client = oai(sim)
    f = upload(client, [oline("a")])
    created = [client.batches.create(input_file_id=f.id, endpoint=CHAT, completion_window="24h").id for _ in range(105)]
    newest_first = list(reversed(created))

    sim.clear_log()
    assert [b.id for b in client.batches.list(limit=100)] == newest_first
    lists = [r.query for r in sim.requests(method="GET", path="/v1/batches")]
    assert lists == [{"limit": "100"}, {"limit": "100", "after": newest_first[99]}]

    page = client.batches.list()  # default limit 20
    assert [b.id for b in page.data] == newest_first[:20] and page.has_more
    assert [b.id for b in client.batches.list(limit=2, after=newest_first[100]).data] == newest_first[101:103]
    last = client.batches.list(limit=5, after=newest_first[99])
    assert [b.id for b in last.data] == newest_first[100:] and last.has_more is False
    assert sim.submissions[("openai", "a")] == 105

    with pytest.raises(openai.BadRequestError):
        client.batches.list(limit=101)


def test_cancel_keeps_partial_results_and_marks_the_rest_cancelled(
    make_sim: Callable[..., Simulator], oai: Callable[..., openai.OpenAI]
) -> None:
    sim = make_sim(per_request_s=1, cancel_s=5)
    client = oai(sim)
    ids = [f"r{i}" for i in range(5)]
    batch = submit(client, [oline(c) for c in ids])
    sim.advance(2.5)

    cancelling = client.batches.cancel(batch.id)
    cancel_req = sim.requests(method="POST", path=f"/v1/batches/{batch.id}/cancel")[-1]
    assert cancel_req.headers.get("content-length") == "0"
    assert cancelling.status == "cancelling" and cancelling.cancelling_at == int(T0 + 2.5)
    assert cancelling.cancelled_at is None and cancelling.output_file_id is None
    sim.advance(3)
    assert client.batches.retrieve(batch.id).status == "cancelling"
    # Cancelling again while cancelling is harmless.
    assert client.batches.cancel(batch.id).cancelling_at == int(T0 + 2.5)

    sim.advance(10)
    b = client.batches.retrieve(batch.id)
    assert b.status == "cancelled" and b.cancelled_at == int(T0 + 7.5)
    assert b.request_counts is not None and b.request_counts.model_dump() == {"total": 5, "completed": 2, "failed": 3}
    out, err = read_lines(client, b.output_file_id), read_lines(client, b.error_file_id)
    assert (len(out), len(err)) == (b.request_counts.completed, b.request_counts.failed)
    assert sorted(line["custom_id"] for line in out) == ["r0", "r1"]
    assert sorted(line["custom_id"] for line in err) == ["r2", "r3", "r4"]
    for line in out:
        ChatCompletion.model_validate(line["response"]["body"])
    for line in err:
        assert_openai_error_line(line)
        assert line["response"] is None and line["error"]["code"] == "batch_cancelled"
    assert client.files.retrieve(b.error_file_id).purpose == "batch_output"  # type: ignore[arg-type]

    with pytest.raises(openai.BadRequestError):
        client.batches.cancel(batch.id)


def test_cancel_while_validating_and_with_no_delay(make_sim: Callable[..., Simulator], oai: Callable[..., openai.OpenAI]) -> None:
    sim = make_sim(validate_s=10, per_request_s=1)
    client = oai(sim)
    batch = submit(client, [oline("a"), oline("b")])
    assert batch.status == "validating"
    c = client.batches.cancel(batch.id)
    assert c.status in ("cancelling", "cancelled")
    sim.advance(1)
    b = client.batches.retrieve(batch.id)
    assert b.status == "cancelled" and b.in_progress_at is None
    assert b.request_counts is not None and b.request_counts.model_dump() == {"total": 2, "completed": 0, "failed": 2}
    assert b.output_file_id is None
    assert {line["error"]["code"] for line in read_lines(client, b.error_file_id)} == {"batch_cancelled"}


def test_expiry_keeps_partial_results(make_sim: Callable[..., Simulator], oai: Callable[..., openai.OpenAI]) -> None:
    sim = make_sim(per_request_s=1)
    client = oai(sim)
    batch = submit(client, [oline(f"r{i}") for i in range(4)])
    sim.advance(1.5)
    sim.expire(batch.id)
    b = client.batches.retrieve(batch.id)
    assert b.status == "expired" and b.expired_at == int(T0 + 1.5) and b.completed_at is None
    assert b.request_counts is not None and b.request_counts.model_dump() == {"total": 4, "completed": 1, "failed": 3}
    out, err = read_lines(client, b.output_file_id), read_lines(client, b.error_file_id)
    assert [line["custom_id"] for line in out] == ["r0"]
    assert sorted(line["custom_id"] for line in err) == ["r1", "r2", "r3"]
    assert all(line["response"] is None and line["error"]["code"] == "batch_expired" for line in err)
    assert sim.batch(batch.id)["status"] == "expired"
    # Expiring an ended batch changes nothing.
    sim.expire(batch.id)
    assert client.batches.retrieve(batch.id) == b
    with pytest.raises(KeyError):
        sim.expire("batch_unknown")


def test_completion_window_passing_expires_the_batch(make_sim: Callable[..., Simulator], oai: Callable[..., openai.OpenAI]) -> None:
    sim = make_sim(per_request_s=1, window_s=10)
    client = oai(sim)
    batch = submit(client, [oline(f"r{i}") for i in range(20)])
    assert batch.expires_at == int(T0) + 10
    sim.advance(11)
    b = client.batches.retrieve(batch.id)
    assert b.status == "expired" and b.expired_at == int(T0) + 10
    assert b.request_counts is not None and b.request_counts.model_dump() == {"total": 20, "completed": 10, "failed": 10}
    assert len(read_lines(client, b.output_file_id)) == 10
    assert len(read_lines(client, b.error_file_id)) == 10


@pytest.mark.parametrize(
    ("lines", "code", "line_no"),
    [
        ([oline("a"), oline("b", url="/v1/embeddings")], "url_mismatch", 2),
        ([oline("a"), oline("b", model="gpt-4o")], "model_mismatch", 2),
        ([oline("a"), oline("a")], "duplicate_custom_id", 2),
        ([], "empty_file", None),
        ([oline("a"), {"custom_id": "b", "method": "GET", "url": CHAT, "body": {}}], "invalid_method", 2),
    ],
)
def test_invalid_input_file_fails_the_batch(
    make_sim: Callable[..., Simulator], oai: Callable[..., openai.OpenAI], lines: list[dict[str, Any]], code: str, line_no: int | None
) -> None:
    sim = make_sim(validate_s=2)
    client = oai(sim)
    batch = submit(client, lines)
    assert batch.status == "validating"  # input problems fail a created batch, never the create call
    sim.advance(2)
    b = client.batches.retrieve(batch.id)
    assert b.status == "failed" and b.failed_at == int(T0) + 2
    assert b.errors is not None and b.errors.object == "list" and b.errors.data
    first = b.errors.data[0]
    assert (first.code, first.line) == (code, line_no) and first.message
    assert b.output_file_id is None and b.error_file_id is None and b.in_progress_at is None
    assert b.request_counts is not None and b.request_counts.model_dump() == {"total": 0, "completed": 0, "failed": 0}


@pytest.mark.parametrize("end", ["cancel", "expire"])
def test_invalid_batch_ended_while_validating_has_no_result_lines(
    make_sim: Callable[..., Simulator], oai: Callable[..., openai.OpenAI], end: str
) -> None:
    """request_counts stay all zero for an invalid input file, so no result file may carry lines either."""
    sim = make_sim(validate_s=10, per_request_s=1)
    client = oai(sim)
    batch = submit(client, [oline("a"), oline("b"), oline("c", url="/v1/embeddings")])
    sim.advance(1)
    if end == "cancel":
        client.batches.cancel(batch.id)
    else:
        sim.expire(batch.id)
    sim.advance(1)
    b = client.batches.retrieve(batch.id)
    assert b.status == ("cancelled" if end == "cancel" else "expired")
    assert b.request_counts is not None and b.request_counts.model_dump() == {"total": 0, "completed": 0, "failed": 0}
    assert b.output_file_id is None and b.error_file_id is None
    assert b.errors is None  # validation never finished
    assert [f.purpose for f in client.files.list()] == ["batch"]


def test_invalid_json_line_fails_the_batch(sim: Simulator, oai: Callable[..., openai.OpenAI]) -> None:
    client = oai(sim)
    f = client.files.create(file=jsonl([oline("a")]) + b"{not json\n", purpose="batch")
    b = client.batches.retrieve(client.batches.create(input_file_id=f.id, endpoint=CHAT, completion_window="24h").id)
    assert b.status == "failed" and b.errors is not None
    assert [(e.code, e.line) for e in b.errors.data or []] == [("invalid_json_line", 2)]


def test_failure_rate_and_failalways(make_sim: Callable[..., Simulator], oai: Callable[..., openai.OpenAI]) -> None:
    sim = make_sim(failure_rate=0.5, seed=7)
    client = oai(sim)
    ids = [f"r{i}" for i in range(40)] + ["x-failalways-1", "failalways"]
    lines = [oline(c) for c in ids] + [oline("nomodel", body={"messages": [{"role": "user", "content": "hi"}]})]
    b = client.batches.retrieve(submit(client, lines).id)
    assert b.status == "completed" and b.request_counts is not None
    out, err = read_lines(client, b.output_file_id), read_lines(client, b.error_file_id)
    assert (len(out), len(err)) == (b.request_counts.completed, b.request_counts.failed)
    assert b.request_counts.total == len(out) + len(err) == 43
    assert 5 < len(err) < 38
    by_id = {line["custom_id"]: line for line in err}
    assert {"x-failalways-1", "failalways", "nomodel"} <= set(by_id)
    assert by_id["nomodel"]["response"]["status_code"] == 400
    assert {line["response"]["status_code"] for line in err} <= {400, 500}
    for line in err:
        assert_openai_error_line(line)
    for line in out:
        assert ChatCompletion.model_validate(line["response"]["body"]).usage.total_tokens > 0  # type: ignore[union-attr]
    # Usage counts only the requests that succeeded.
    assert b.usage is not None
    assert b.usage.input_tokens == sum(line["response"]["body"]["usage"]["prompt_tokens"] for line in out)

    # failalways is permanent: resubmitting still fails, even with no failure rate.
    sim.config.failure_rate = 0.0
    again = client.batches.retrieve(submit(client, [oline("failalways"), oline("ok")]).id)
    assert again.request_counts is not None and again.request_counts.model_dump() == {"total": 2, "completed": 1, "failed": 1}
    (line,) = read_lines(client, again.error_file_id)
    assert line["custom_id"] == "failalways" and line["response"]["status_code"] == 400


def test_first_try_failures_fail_only_the_first_submission(
    make_sim: Callable[..., Simulator], oai: Callable[..., openai.OpenAI]
) -> None:
    sim = make_sim(first_try_failure_rate=0.5)
    client = oai(sim)
    ids = [f"r{i}" for i in range(30)]
    first = client.batches.retrieve(submit(client, [oline(c) for c in ids]).id)
    assert first.request_counts is not None and 0 < first.request_counts.failed < 30
    failed = {line["custom_id"] for line in read_lines(client, first.error_file_id)}
    assert len(failed) == first.request_counts.failed
    assert all(
        line["response"]["status_code"] == 500 and line["response"]["body"]["error"]["type"] == "server_error"
        for line in read_lines(client, first.error_file_id)
    )

    second = client.batches.retrieve(submit(client, [oline(c) for c in sorted(failed)]).id)
    assert second.request_counts is not None
    assert second.request_counts.model_dump() == {"total": len(failed), "completed": len(failed), "failed": 0}
    assert second.error_file_id is None
    assert sim.submissions[("openai", sorted(failed)[0])] == 2
    assert sim.submissions[("openai", sorted(set(ids) - failed)[0])] == 1


def test_first_try_failure_rate_one(make_sim: Callable[..., Simulator], oai: Callable[..., openai.OpenAI]) -> None:
    sim = make_sim(first_try_failure_rate=1.0)
    client = oai(sim)
    lines = [oline(f"r{i}") for i in range(5)]
    first = client.batches.retrieve(submit(client, lines).id)
    second = client.batches.retrieve(submit(client, lines).id)
    assert first.request_counts is not None and second.request_counts is not None
    assert (first.request_counts.completed, first.request_counts.failed) == (0, 5)
    assert (second.request_counts.completed, second.request_counts.failed) == (5, 0)
    assert first.output_file_id is None and second.error_file_id is None
    assert Counter(sim.submissions) == Counter({("openai", f"r{i}"): 2 for i in range(5)})


# ================================================================ Anthropic


def test_anthropic_create_retrieve_counts_and_results(make_sim: Callable[..., Simulator], ant: Callable[..., anthropic.Anthropic]) -> None:
    sim = make_sim(per_request_s=1, finalize_s=1)
    client = ant(sim)
    reqs = [areq("ok-1"), areq("ok-2", system="be brief"), areq("failalways-3"), areq("short", max_tokens=1)]
    reqs.append({"custom_id": "no-max", "params": {"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "x"}]}})
    batch = client.messages.batches.create(requests=reqs)  # type: ignore[arg-type]
    create_req = sim.requests(provider="anthropic", method="POST")[-1]
    assert create_req.path == "/v1/messages/batches" and create_req.headers["authorization"] == "Bearer test-key"
    assert "anthropic-version" in create_req.headers

    assert batch.type == "message_batch" and batch.id.startswith("msgbatch_")
    assert batch.processing_status == "in_progress" and batch.results_url is None and batch.ended_at is None
    assert batch.created_at.timestamp() == T0 and batch.expires_at.timestamp() == T0 + 86400
    zero = {"succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
    assert batch.request_counts.model_dump() == {"processing": 5, **zero}

    sim.advance(3.5)  # some requests are done, but counts stay zero until the batch ends
    mid = client.messages.batches.retrieve(batch.id)
    assert mid.processing_status == "in_progress" and mid.request_counts.model_dump() == {"processing": 5, **zero}
    with pytest.raises(anthropic.AnthropicError, match="results_url"):
        client.messages.batches.results(batch.id)

    sim.advance(3)
    done = client.messages.batches.retrieve(batch.id)
    assert done.processing_status == "ended" and done.ended_at is not None
    assert done.ended_at.timestamp() == T0 + 6
    assert done.results_url == f"{sim.base_url}/v1/messages/batches/{batch.id}/results"
    assert done.request_counts.model_dump() == {"processing": 0, "succeeded": 3, "errored": 2, "canceled": 0, "expired": 0}

    results = {r.custom_id: r for r in raw_results(client, batch.id)}
    assert sorted(results) == sorted(r["custom_id"] for r in reqs)
    for cid in ("ok-1", "ok-2", "short"):
        result = results[cid].result
        assert result.type == "succeeded"
        usage = result.message.usage
        assert usage.input_tokens > 0 and usage.output_tokens > 0
        assert result.message.model == "claude-sonnet-4-5" and result.message.content
    assert results["short"].result.message.stop_reason == "max_tokens"  # type: ignore[union-attr]
    assert results["short"].result.message.usage.output_tokens == 1  # type: ignore[union-attr]
    for cid in ("failalways-3", "no-max"):
        errored = results[cid].result
        assert errored.type == "errored"
        assert errored.error.type == "error" and errored.error.error.type == "invalid_request_error"
        assert errored.error.error.message
    assert "max_tokens" in results["no-max"].result.error.error.message  # type: ignore[union-attr]

    # The SDK's own results() makes a retrieve then follows results_url.
    sim.clear_log()
    decoded = list(client.messages.batches.results(batch.id))
    assert [r.custom_id for r in decoded] == [r["custom_id"] for r in reqs]
    paths = [(r.method, r.path) for r in sim.request_log]
    assert paths == [("GET", f"/v1/messages/batches/{batch.id}"), ("GET", f"/v1/messages/batches/{batch.id}/results")]
    assert sim.request_log[-1].headers["accept"] == "application/binary"


def test_anthropic_create_rejections(sim: Simulator, ant: Callable[..., anthropic.Anthropic]) -> None:
    client = ant(sim)
    for requests in ([], [areq("dup"), areq("dup")], [areq("bad id!")], [{"custom_id": "x"}]):
        with pytest.raises(anthropic.BadRequestError) as info:
            client.messages.batches.create(requests=requests)  # type: ignore[arg-type]
        ErrorResponse.model_validate(info.value.body)
        assert info.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
        assert info.value.request_id
    with pytest.raises(anthropic.NotFoundError) as nf:
        client.messages.batches.retrieve("msgbatch_nope")
    assert nf.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
    assert not sim.batches("anthropic")


def test_anthropic_list_newest_first_with_after_and_before_paging(sim: Simulator, ant: Callable[..., anthropic.Anthropic]) -> None:
    client = ant(sim)
    created = [client.messages.batches.create(requests=[areq(f"c{i}")]).id for i in range(7)]
    newest_first = list(reversed(created))

    sim.clear_log()
    assert [b.id for b in client.messages.batches.list(limit=2)] == newest_first
    queries = [r.query for r in sim.requests(provider="anthropic", method="GET")]
    assert queries[0] == {"limit": "2"}
    assert queries[1] == {"limit": "2", "after_id": newest_first[1]}
    assert len(queries) == 4

    page = client.messages.batches.list(limit=3)
    assert page.first_id == newest_first[0] and page.last_id == newest_first[2] and page.has_more
    assert [b.id for b in client.messages.batches.list()] == newest_first  # default limit 20
    before = client.messages.batches.list(limit=2, before_id=newest_first[4])
    assert [b.id for b in before.data] == newest_first[2:4] and before.has_more
    # Auto-pagination backwards from before_id walks towards the newest.
    assert sorted(b.id for b in client.messages.batches.list(limit=2, before_id=newest_first[4])) == sorted(newest_first[:4])
    with pytest.raises(anthropic.BadRequestError):
        client.messages.batches.list(limit=1001)


def test_anthropic_cancel_delete_and_canceled_results(
    make_sim: Callable[..., Simulator], ant: Callable[..., anthropic.Anthropic]
) -> None:
    sim = make_sim(per_request_s=1, cancel_s=2)
    client = ant(sim)
    batch = client.messages.batches.create(requests=[areq(f"c{i}") for i in range(5)])
    with pytest.raises(anthropic.BadRequestError):
        client.messages.batches.delete(batch.id)  # still processing

    sim.advance(2.5)
    canceling = client.messages.batches.cancel(batch.id)
    assert canceling.processing_status == "canceling"
    assert canceling.cancel_initiated_at is not None and canceling.cancel_initiated_at.timestamp() == T0 + 2.5
    assert canceling.request_counts.processing == 5 and canceling.results_url is None
    with pytest.raises(anthropic.BadRequestError):
        client.messages.batches.delete(batch.id)

    sim.advance(2)
    ended = client.messages.batches.retrieve(batch.id)
    assert ended.processing_status == "ended" and ended.ended_at is not None
    assert ended.request_counts.model_dump() == {"processing": 0, "succeeded": 2, "errored": 0, "canceled": 3, "expired": 0}
    results = {r.custom_id: r.result.type for r in raw_results(client, batch.id)}
    assert results == {"c0": "succeeded", "c1": "succeeded", "c2": "canceled", "c3": "canceled", "c4": "canceled"}
    with pytest.raises(anthropic.BadRequestError):
        client.messages.batches.cancel(batch.id)

    deleted = client.messages.batches.delete(batch.id)
    assert (deleted.id, deleted.type) == (batch.id, "message_batch_deleted")
    with pytest.raises(anthropic.NotFoundError):
        client.messages.batches.retrieve(batch.id)
    assert [b.id for b in client.messages.batches.list()] == []


def test_anthropic_expiry(make_sim: Callable[..., Simulator], ant: Callable[..., anthropic.Anthropic]) -> None:
    sim = make_sim(per_request_s=1)
    client = ant(sim)
    batch = client.messages.batches.create(requests=[areq(f"c{i}") for i in range(4)])
    sim.advance(1.5)
    sim.expire(batch.id)
    ended = client.messages.batches.retrieve(batch.id)
    assert ended.processing_status == "ended" and ended.ended_at is not None
    assert ended.ended_at.timestamp() == T0 + 1.5 and ended.cancel_initiated_at is None
    assert ended.request_counts.model_dump() == {"processing": 0, "succeeded": 1, "errored": 0, "canceled": 0, "expired": 3}
    types = Counter(r.result.type for r in raw_results(client, batch.id))
    assert types == Counter({"succeeded": 1, "expired": 3})

    # The 24h window passing has the same effect.
    natural = make_sim(per_request_s=1, window_s=3)
    nclient = ant(natural)
    nb = nclient.messages.batches.create(requests=[areq(f"c{i}") for i in range(5)])
    natural.advance(3)
    assert nclient.messages.batches.retrieve(nb.id).request_counts.expired == 2


def test_anthropic_failure_knobs(make_sim: Callable[..., Simulator], ant: Callable[..., anthropic.Anthropic]) -> None:
    sim = make_sim(first_try_failure_rate=1.0)
    client = ant(sim)
    reqs = [areq(f"c{i}") for i in range(4)]
    first = client.messages.batches.create(requests=reqs)
    second = client.messages.batches.create(requests=reqs)
    assert client.messages.batches.retrieve(first.id).request_counts.errored == 4
    assert client.messages.batches.retrieve(second.id).request_counts.succeeded == 4
    for r in raw_results(client, first.id):
        assert r.result.type == "errored" and r.result.error.error.type == "api_error"
    assert sim.submissions[("anthropic", "c0")] == 2 and sim.submissions[("openai", "c0")] == 0

    flaky = make_sim(failure_rate=0.5, seed=3)
    fclient = ant(flaky)
    fb = fclient.messages.batches.create(requests=[areq(f"c{i}") for i in range(40)])
    counts = fclient.messages.batches.retrieve(fb.id).request_counts
    assert 5 < counts.errored < 35 and counts.succeeded + counts.errored == 40
    assert Counter(r.result.type for r in raw_results(fclient, fb.id)) == Counter(
        {"succeeded": counts.succeeded, "errored": counts.errored}
    )


def test_anthropic_cache_usage(make_sim: Callable[..., Simulator], ant: Callable[..., anthropic.Anthropic]) -> None:
    sim = make_sim(cached_input_share=0.5, cache_write_share=0.25)
    client = ant(sim)
    batch = client.messages.batches.create(requests=[areq("long", system="x" * 4000)])
    (result,) = raw_results(client, batch.id)
    usage = result.result.message.usage  # type: ignore[union-attr]
    assert usage.cache_read_input_tokens and usage.cache_creation_input_tokens and usage.input_tokens > 0
    total = usage.input_tokens + usage.cache_read_input_tokens + usage.cache_creation_input_tokens
    assert usage.cache_read_input_tokens == total // 2


def test_anthropic_beta_batches_use_the_same_routes(sim: Simulator, ant: Callable[..., anthropic.Anthropic]) -> None:
    client = ant(sim)
    batch = client.beta.messages.batches.create(requests=[areq("b1")], betas=["message-batches-2024-09-24"])
    assert client.beta.messages.batches.retrieve(batch.id).processing_status == "ended"
    assert [r.custom_id for r in client.beta.messages.batches.results(batch.id)] == ["b1"]
    assert sim.requests(provider="anthropic", method="POST")[-1].headers["anthropic-beta"] == "message-batches-2024-09-24"


# ================================================================ faults and auth


def test_fault_rate_one_gives_retryable_errors_and_the_sdk_retries(
    make_sim: Callable[..., Simulator], oai: Callable[..., openai.OpenAI], ant: Callable[..., anthropic.Anthropic]
) -> None:
    sim = make_sim(fault_rate=1.0, fault_retry_after_ms=(10, 30))
    with pytest.raises((openai.RateLimitError, openai.InternalServerError)) as info:
        oai(sim, max_retries=2).batches.list()
    headers = info.value.response.headers
    assert 10 <= int(headers["retry-after-ms"]) <= 30 and headers["retry-after"] == "1"
    assert headers["x-request-id"].startswith("req_")
    assert info.value.body["type"] in ("requests", "server_error")  # type: ignore[index]
    log = sim.requests(provider="openai")
    assert [r.retry_count for r in log] == [0, 1, 2]
    assert all(r.fault and r.status in (429, 500) for r in log)

    with pytest.raises((anthropic.RateLimitError, anthropic.InternalServerError)) as ainfo:
        ant(sim, max_retries=2).messages.batches.list()
    assert ainfo.value.response.headers["retry-after-ms"] and ainfo.value.request_id
    ErrorResponse.model_validate(ainfo.value.body)
    assert [r.retry_count for r in sim.requests(provider="anthropic")] == [0, 1, 2]

    sim.clear_log()
    with pytest.raises((openai.RateLimitError, openai.InternalServerError)):
        oai(sim, max_retries=0).files.create(file=b"x", purpose="batch")
    assert len(sim.request_log) == 1
    assert not sim.batches() and not list(sim.state.files)  # a faulted call has no effect


def test_partial_fault_rate_is_survived_by_sdk_retries(
    make_sim: Callable[..., Simulator], oai: Callable[..., openai.OpenAI], ant: Callable[..., anthropic.Anthropic]
) -> None:
    sim = make_sim(fault_rate=0.4, fault_retry_after_ms=(1, 5), seed=11)
    client = oai(sim, max_retries=8)
    batch = submit(client, [oline(f"r{i}") for i in range(3)])
    for _ in range(5):
        assert client.batches.retrieve(batch.id).status == "completed"
    done = client.batches.retrieve(batch.id)
    assert len(read_lines(client, done.output_file_id)) == 3  # re-sent uploads arrived whole
    aclient = ant(sim, max_retries=8)
    for _ in range(5):
        aclient.messages.batches.create(requests=[areq("x")])
    log = sim.request_log
    assert any(r.fault for r in log) and any(r.retry_count for r in log)
    assert {r.status for r in log} <= {200, 429, 500}
    assert len(sim.batches("openai")) == 1 and len(sim.batches("anthropic")) == 5

    # The x-sim-fault header forces a specific fault.
    with pytest.raises(anthropic.OverloadedError):
        ant(sim).messages.batches.list(extra_headers={"x-sim-fault": "529"})
    sim.config.fault_rate = 0.0
    # Only 4xx/5xx can be forced; anything else is ignored.
    assert ant(sim).messages.batches.list(extra_headers={"x-sim-fault": "200"}).data


def test_require_api_key(
    make_sim: Callable[..., Simulator], oai: Callable[..., openai.OpenAI], ant: Callable[..., anthropic.Anthropic]
) -> None:
    sim = make_sim(require_api_key="sk-right")

    with pytest.raises(openai.AuthenticationError) as info:
        oai(sim, api_key="sk-wrong").files.create(file=jsonl([oline("a")]), purpose="batch")
    assert info.value.code == "invalid_api_key"
    with pytest.raises(openai.AuthenticationError):
        oai(sim, api_key="sk-wrong").batches.list()
    good = oai(sim, api_key="sk-right")
    assert submit(good, [oline("a")]).status in ("in_progress", "completed")

    with pytest.raises(anthropic.AuthenticationError) as ainfo:
        ant(sim, api_key="sk-wrong").messages.batches.list()
    assert ainfo.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]
    assert ant(sim, api_key="sk-right").messages.batches.create(requests=[areq("a")]).id
    # Anthropic also accepts the key in x-api-key (older SDKs, curl).
    by_header = ant(sim, api_key=None, default_headers={"x-api-key": "sk-right"})
    assert [b.id for b in by_header.messages.batches.list()]
    assert "authorization" not in sim.request_log[-1].headers and sim.request_log[-1].status == 200
    with pytest.raises(anthropic.AuthenticationError):
        ant(sim, api_key=None, default_headers={"x-api-key": "sk-wrong"}).messages.batches.list()
    # x-api-key is Anthropic's header only.
    with pytest.raises(openai.AuthenticationError):
        oai(sim, api_key="sk-wrong", default_headers={"x-api-key": "sk-right"}).batches.list()

    statuses = Counter(r.status for r in sim.request_log)
    assert statuses[401] == 5 and set(statuses) == {200, 401}


def test_unknown_route_gets_provider_error_shape(
    sim: Simulator, oai: Callable[..., openai.OpenAI], ant: Callable[..., anthropic.Anthropic]
) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        oai(sim).get("/nothing/here", cast_to=object)
    assert info.value.body["message"].startswith("Unknown request URL")  # type: ignore[index]
    with pytest.raises(anthropic.NotFoundError) as ainfo:
        ant(sim).get("/v1/messages/nothing", cast_to=object)
    ErrorResponse.model_validate(ainfo.value.body)


# ================================================================ async clients


def test_async_clients_against_start_async() -> None:
    async def main() -> None:
        async with Simulator(SimConfig(per_request_s=0.0), clock=ManualClock(T0)) as sim:
            oclient = openai.AsyncOpenAI(
                base_url=sim.openai_base_url, api_key="test-key", max_retries=0, _strict_response_validation=True
            )
            aclient = anthropic.AsyncAnthropic(
                base_url=sim.anthropic_base_url, api_key="test-key", max_retries=0, _strict_response_validation=True
            )
            async with oclient, aclient:
                f = await oclient.files.create(file=("in.jsonl", jsonl([oline("a"), oline("b")])), purpose="batch")
                b = await oclient.batches.create(input_file_id=f.id, endpoint=CHAT, completion_window="24h")
                b = await oclient.batches.retrieve(b.id)
                assert b.status == "completed" and b.output_file_id
                text = (await oclient.files.content(b.output_file_id)).text
                assert len(text.splitlines()) == 2
                assert [x.id async for x in oclient.batches.list(limit=1)] == [b.id]

                mb = await aclient.messages.batches.create(requests=[areq("a"), areq("b")])
                got = [r async for r in await aclient.messages.batches.results(mb.id)]
                assert sorted(r.custom_id for r in got) == ["a", "b"]
                assert all(r.result.type == "succeeded" for r in got)

    asyncio.run(main())


# ================================================================ objects are well-formed throughout


def test_every_json_object_validates_in_every_phase(
    make_sim: Callable[..., Simulator], oai: Callable[..., openai.OpenAI], ant: Callable[..., anthropic.Anthropic]
) -> None:
    """Strict clients plus explicit model checks over a whole timeline, both providers."""
    sim = make_sim(validate_s=1, per_request_s=1, finalize_s=1, cancel_s=1)
    oclient, aclient = oai(sim), ant(sim)
    ob = [submit(oclient, [oline(f"r{i}") for i in range(3)]) for _ in range(2)]
    ab = [aclient.messages.batches.create(requests=[areq(f"c{i}") for i in range(3)]) for _ in range(2)]
    seen_o: set[str] = set()
    seen_a: set[str] = set()
    for step in range(10):
        if step == 2:
            oclient.batches.cancel(ob[1].id)
            aclient.messages.batches.cancel(ab[1].id)
        for b in oclient.batches.list():
            Batch.model_validate(b.model_dump(mode="json"))
            seen_o.add(b.status)
        for a in aclient.messages.batches.list():
            MessageBatch.model_validate(a.model_dump(mode="json"))
            total = sum(a.request_counts.model_dump().values())
            assert total == 3
            seen_a.add(a.processing_status)
        sim.advance(0.75)
    assert {"validating", "in_progress", "finalizing", "completed", "cancelling", "cancelled"} <= seen_o
    assert seen_a == {"in_progress", "canceling", "ended"}
