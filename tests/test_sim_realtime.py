"""The simulator's real-time routes (issue 15), through the official SDKs: usage like a
batch line's, faults with Retry-After, flex refusals, and batches that stall."""

from __future__ import annotations

import anthropic
import openai
import pytest

from batchtop.sim import SimConfig, Simulator


@pytest.fixture
def rt_sim():  # type: ignore[no-untyped-def]
    s = Simulator(SimConfig()).start()
    yield s
    s.stop()


def test_the_four_endpoints_answer_with_usage(rt_sim: Simulator) -> None:
    o = openai.OpenAI(api_key="k", base_url=rt_sim.openai_base_url, max_retries=0)
    chat = o.chat.completions.create(model="gpt-4o-mini", max_tokens=20, messages=[{"role": "user", "content": "hi"}],
                                     extra_headers={"x-batchtop-custom-id": "c1"})
    assert chat.usage is not None and chat.usage.prompt_tokens > 0 and 0 < chat.usage.completion_tokens <= 20
    resp = o.responses.create(model="gpt-4o-mini", input="hi", max_output_tokens=30)
    assert resp.usage is not None and resp.usage.input_tokens > 0
    emb = o.embeddings.create(model="text-embedding-3-small", input=["a", "b"])
    assert len(emb.data) == 2 and emb.usage.prompt_tokens > 0
    a = anthropic.Anthropic(api_key="k", base_url=rt_sim.anthropic_base_url, max_retries=0)
    msg = a.messages.create(model="claude-haiku-4-5", max_tokens=16, messages=[{"role": "user", "content": "hi"}])
    assert msg.usage.input_tokens > 0 and msg.usage.output_tokens <= 16
    assert rt_sim.realtime_calls["c1"] == 1 and sum(rt_sim.realtime_calls.values()) == 4
    import json
    import urllib.error
    import urllib.request

    bad = urllib.request.Request(
        f"{rt_sim.anthropic_base_url}/v1/messages", data=json.dumps({"model": "claude-haiku-4-5", "messages": []}).encode(),
        headers={"content-type": "application/json"}, method="POST",
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(bad)
    assert refused.value.code == 400 and json.loads(refused.value.read())["error"]["type"] == "invalid_request_error"


def test_faults_carry_retry_after_and_flex_may_be_refused(rt_sim: Simulator) -> None:
    o = openai.OpenAI(api_key="k", base_url=rt_sim.openai_base_url, max_retries=0)
    rt_sim.config.realtime_fault_rate = 1.0
    with pytest.raises((openai.RateLimitError, openai.InternalServerError)) as caught:
        o.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.response.headers.get("retry-after")
    rt_sim.config.realtime_fault_rate = 0.0
    rt_sim.config.flex_refusal_rate = 1.0
    with pytest.raises(openai.RateLimitError):
        o.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], service_tier="flex")
    rt_sim.config.flex_refusal_rate = 0.0
    ok = o.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], service_tier="flex")
    assert ok.service_tier == "flex"
    assert sum(rt_sim.realtime_calls.values()) == 1  # only the answered call counts


def test_a_stalled_batch_never_progresses_until_cancelled(rt_sim: Simulator) -> None:
    import io
    import json

    rt_sim.config.stall = True
    o = openai.OpenAI(api_key="k", base_url=rt_sim.openai_base_url, max_retries=0)
    line = {"custom_id": "s1", "method": "POST", "url": "/v1/chat/completions",
            "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}}
    f = o.files.create(file=("in.jsonl", io.BytesIO(json.dumps(line).encode() + b"\n")), purpose="batch")
    batch = o.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h")
    rt_sim.advance(3600)
    again = o.batches.retrieve(batch.id)
    assert again.status in ("validating", "in_progress") and again.request_counts.completed == 0
    rt_sim.config.stall = False  # captured per batch: this one still stalls
    rt_sim.advance(3600)
    assert o.batches.retrieve(batch.id).request_counts.completed == 0
    o.batches.cancel(batch.id)
    rt_sim.advance(60)
    assert o.batches.retrieve(batch.id).status == "cancelled"
