"""The simulator's Gemini Batch Mode against google-genai's own types.

Every JSON body the simulator sends is read the way the SDK reads it (its
`_BatchJob_from_mldev` / `_ListBatchJobsResponse_from_mldev` converters, then its
pydantic models), and the parts the SDK passes through as they are (a
GenerateContentResponse, a File, an error Status) are validated raw against the
SDK's models, whose `extra="forbid"` turns an unknown or misspelt field into an
error. A UserWarning is an error here: google-genai warns (and carries on) when a state
is not a `JobState` it knows.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from google import genai
from google.genai import batches as sdk_batches
from google.genai import errors as genai_errors
from google.genai import types

from batchtop.sim import SimConfig, Simulator

KEY = "test-key"


@pytest.fixture
def sim() -> Iterator[Simulator]:
    simulator = Simulator(SimConfig(require_api_key=KEY)).start()
    try:
        yield simulator
    finally:
        simulator.stop()


@pytest.fixture
def client(sim: Simulator) -> Iterator[genai.Client]:
    c = genai.Client(api_key=KEY, http_options=types.HttpOptions(base_url=sim.gemini_base_url))
    with c:
        yield c


@pytest.fixture(autouse=True)
def warnings_are_errors() -> Iterator[None]:
    with warnings.catch_warnings():
        # what google-genai warns with (an unknown enum value, a field type mismatch); not
        # ResourceWarnings of earlier tests' sockets that the collector happens to close here
        warnings.filterwarnings("error", category=UserWarning)
        yield


def raw(sim: Simulator, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """One HTTP call to the simulator's Gemini root, JSON in and out."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        f"{sim.gemini_base_url}/v1beta/{path}", data=data, method=method,
        headers={"x-goog-api-key": KEY, "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request) as response:
            text = response.read()
            return response.status, json.loads(text) if text else None
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def as_batch_job(body: dict[str, Any]) -> types.BatchJob:
    return types.BatchJob._from_response(response=sdk_batches._BatchJob_from_mldev(body), kwargs={})


def inline(key: str, text: str = "hi", **config: Any) -> dict[str, Any]:
    item: dict[str, Any] = {"contents": [{"parts": [{"text": text}], "role": "user"}], "metadata": {"key": key}}
    if config:
        item["config"] = config
    return item


def test_batch_json_reads_as_the_sdk_reads_it_in_every_state(sim: Simulator) -> None:
    sim.config.per_request_s = 1.0
    sim.config.failure_rate = 0.0
    body = {"batch": {"displayName": "batchtop-u1", "inputConfig": {"requests": {"requests": [
        {"request": {"contents": [{"parts": [{"text": "hi"}]}]}, "metadata": {"key": f"k{i}"}} for i in range(3)
    ]}}}}
    status, created = raw(sim, "POST", "models/gemini-2.0-flash:batchGenerateContent", body)
    assert status == 200 and created["name"].startswith("batches/") and created["done"] is False
    job = as_batch_job(created)
    assert job.state == types.JobState.JOB_STATE_RUNNING and job.display_name == "batchtop-u1"
    assert job.model == "models/gemini-2.0-flash" and job.create_time is not None
    assert created["metadata"]["batchStats"] == {
        "requestCount": "3", "successfulRequestCount": "0", "failedRequestCount": "0", "pendingRequestCount": "3",
    }
    sim.advance(10)
    _, ended = raw(sim, "GET", created["name"])
    job = as_batch_job(ended)
    assert job.state == types.JobState.JOB_STATE_SUCCEEDED and job.end_time is not None and ended["done"]
    assert job.dest is not None and job.dest.inlined_responses is not None
    assert [(r.metadata or {}).get("key") for r in job.dest.inlined_responses] == ["k0", "k1", "k2"]
    for item in ended["metadata"]["output"]["inlinedResponses"]["inlinedResponses"]:
        types.GenerateContentResponse.model_validate(item["response"])  # strict: the raw wire shape
    # the list, paged by token, newest first
    for _ in range(2):
        raw(sim, "POST", "models/gemini-2.0-flash:batchGenerateContent", body)
    _, first = raw(sim, "GET", "batches?pageSize=2")
    listed = types.ListBatchJobsResponse._from_response(
        response=sdk_batches._ListBatchJobsResponse_from_mldev(first), kwargs={}
    )
    assert len(listed.batch_jobs or []) == 2 and listed.next_page_token
    _, rest = raw(sim, "GET", f"batches?pageSize=2&pageToken={first['nextPageToken']}")
    assert [b["name"] for b in rest["operations"]] == [created["name"]] and "nextPageToken" not in rest


def test_cancel_delete_and_errors_in_google_rpc_shape(sim: Simulator, client: genai.Client) -> None:
    sim.config.per_request_s = 1.0
    job = client.batches.create(model="gemini-2.0-flash", src=[inline("a"), inline("b")])
    assert job.name is not None
    client.batches.cancel(name=job.name)
    assert client.batches.get(name=job.name).state == types.JobState.JOB_STATE_CANCELLED
    with pytest.raises(genai_errors.ClientError) as exc:
        client.batches.cancel(name=job.name)
    assert exc.value.code == 400 and exc.value.status == "INVALID_ARGUMENT"
    client.batches.delete(name=job.name)
    with pytest.raises(genai_errors.ClientError) as exc:
        client.batches.get(name=job.name)
    assert exc.value.code == 404 and exc.value.status == "NOT_FOUND" and exc.value.message
    status, body = raw(sim, "GET", "batches/nope")
    assert status == 404 and set(body["error"]) == {"code", "message", "status"}
    bad = genai.Client(api_key="wrong", http_options=types.HttpOptions(base_url=sim.gemini_base_url))
    with bad, pytest.raises(genai_errors.ClientError) as exc:
        bad.batches.list()
    assert exc.value.code == 401 and exc.value.status == "UNAUTHENTICATED"


def test_file_input_resumable_upload_output_file_and_per_request_errors(sim: Simulator, client: genai.Client) -> None:
    import io

    sim.config.scripted_errors = {"quota-1": "insufficient_quota"}
    sim.config.thoughts_share = 0.5
    lines = [
        {"key": "ok-1", "request": {"contents": [{"parts": [{"text": "hello"}]}], "generationConfig": {"maxOutputTokens": 5}}},
        {"key": "failalways-1", "request": {"contents": [{"parts": [{"text": "hello"}]}]}},
        {"key": "quota-1", "request": {"contents": [{"parts": [{"text": "hello"}]}]}},
        {"key": "empty-1", "request": {"contents": []}},
    ]
    data = "".join(json.dumps(line) + "\n" for line in lines).encode()
    uploaded = client.files.upload(file=io.BytesIO(data), config={"display_name": "batchtop-u9", "mime_type": "jsonl"})
    assert uploaded.name and uploaded.display_name == "batchtop-u9" and uploaded.size_bytes == len(data)
    assert uploaded.source == types.FileSource.UPLOADED
    _, raw_file = raw(sim, "GET", uploaded.name)
    types.File.model_validate(raw_file)  # strict
    job = client.batches.create(model="gemini-2.5-flash", src=uploaded.name, config={"display_name": "batchtop-u9"})
    assert job.name is not None
    sim.advance(5)
    done = client.batches.get(name=job.name)
    assert done.state == types.JobState.JOB_STATE_SUCCEEDED and done.dest is not None and done.dest.file_name
    output = client.files.download(file=done.dest.file_name)
    results = {line["key"]: line for line in map(json.loads, output.splitlines())}
    assert set(results) == {"ok-1", "failalways-1", "quota-1", "empty-1"}
    ok = types.GenerateContentResponse.model_validate(results["ok-1"]["response"])
    assert ok.usage_metadata is not None and ok.usage_metadata.thoughts_token_count
    assert ok.candidates and ok.candidates[0].finish_reason == types.FinishReason.MAX_TOKENS
    for key, code in (("failalways-1", 3), ("quota-1", 8), ("empty-1", 3)):
        error = types.JobError.model_validate(results[key]["error"])
        assert error.code == code and error.message
    assert "quota" in results["quota-1"]["error"]["message"]
    files = [f.name for f in client.files.list()]
    assert uploaded.name in files and done.dest.file_name in files
    client.files.delete(name=uploaded.name)
    assert uploaded.name not in [f.name for f in client.files.list()]


def test_an_unreadable_input_file_fails_the_batch(sim: Simulator, client: genai.Client) -> None:
    import io

    uploaded = client.files.upload(file=io.BytesIO(b"not json\n"), config={"mime_type": "jsonl"})
    assert uploaded.name
    job = client.batches.create(model="gemini-2.0-flash", src=uploaded.name)
    assert job.name and client.batches.get(name=job.name).state == types.JobState.JOB_STATE_FAILED


def test_inline_config_reaches_the_wire_and_stalled_jobs_stay_pending(sim: Simulator, client: genai.Client) -> None:
    sim.config.stalled_batches = 1
    job = client.batches.create(
        model="gemini-2.5-pro",
        src=[inline("s", max_output_tokens=3, system_instruction="be brief")],
        config={"display_name": "batchtop-stalled"},
    )
    assert job.name is not None
    sim.advance(47 * 3600)
    assert client.batches.get(name=job.name).state == types.JobState.JOB_STATE_PENDING
    sim.advance(2 * 3600)  # past the 48-hour window
    assert client.batches.get(name=job.name).state == types.JobState.JOB_STATE_EXPIRED
    (create,) = [r for r in sim.requests(provider="gemini", method="POST") if r.path.endswith(":batchGenerateContent")]
    assert create.path == "/gemini/v1/models/gemini-2.5-pro:batchGenerateContent"  # the SDK's default version


def test_faults_come_with_retry_headers_and_the_google_error_shape(sim: Simulator) -> None:
    request = urllib.request.Request(
        f"{sim.gemini_base_url}/v1beta/batches", headers={"x-goog-api-key": KEY, "x-sim-fault": "429"}
    )
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(request)
    assert exc.value.code == 429 and exc.value.headers["retry-after-ms"]
    body = json.loads(exc.value.read())
    assert body["error"]["status"] == "RESOURCE_EXHAUSTED" and body["error"]["code"] == 429
