"""The simulator's read-only debug route: GET /_sim/submissions.

It gives a tool running the simulator in another process (bench/scale.py) what
`Simulator.submissions` gives an in-process test. It is never faulted and never
logged, so asking does not change what a test measures.
"""

from __future__ import annotations

import json
import signal
import urllib.error
import urllib.request
from typing import Any

import anthropic
import openai
import pytest

from batchtop.sim import SimConfig, Simulator
from test_sim_cli import SimProcess, spawn  # noqa: F401 (spawn is a fixture)


def _get(base: str, path: str, key: str | None = None) -> tuple[int, Any]:
    request = urllib.request.Request(base + path, headers={"Authorization": f"Bearer {key}"} if key else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _submit(sim_base: str, key: str = "k") -> None:
    """Two OpenAI requests (one of them twice) and one Anthropic request, through the SDKs."""
    line = (
        '{{"custom_id":"{}","method":"POST","url":"/v1/chat/completions",'
        '"body":{{"model":"gpt-4o-mini","messages":[{{"role":"user","content":"hi"}}]}}}}\n'
    )
    with openai.OpenAI(base_url=sim_base + "/v1", api_key=key, max_retries=5) as client:
        for content in ((line.format("o1") + line.format("o2")).encode(), line.format("o1").encode()):
            f = client.files.create(file=("in.jsonl", content), purpose="batch")
            client.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h")
    with anthropic.Anthropic(base_url=sim_base, api_key=key, max_retries=5) as aclient:
        aclient.messages.batches.create(
            requests=[{"custom_id": "a1", "params": {"model": "claude-sonnet-4-20250514", "max_tokens": 5,
                                                     "messages": [{"role": "user", "content": "hi"}]}}]
        )


def test_submissions_route_matches_the_in_process_counter_and_is_never_faulted_or_logged() -> None:
    with Simulator(SimConfig(per_request_s=0.0)) as sim:
        status, body = _get(sim.base_url, "/_sim/submissions")
        assert status == 200 and body == {"total": 0, "distinct": 0, "submissions": {"openai": {}, "anthropic": {}}}

        _submit(sim.base_url)
        expected = {"openai": {"o1": 2, "o2": 1}, "anthropic": {"a1": 1}}
        assert {p: {c: n for (pp, c), n in sim.submissions.items() if pp == p} for p in expected} == expected

        sim.config.fault_rate = 1.0  # every API call fails now; the debug route does not
        logged = len(sim.request_log)
        for _ in range(20):
            status, body = _get(sim.base_url, "/_sim/submissions")
            assert status == 200
            assert body == {"total": 4, "distinct": 3, "submissions": expected}
        status, body = _get(sim.base_url, "/_sim/submissions?min=2")
        assert status == 200 and body["submissions"] == {"openai": {"o1": 2}, "anthropic": {}} and body["total"] == 4
        assert len(sim.request_log) == logged, "debug calls were logged"
        with openai.OpenAI(base_url=sim.openai_base_url, api_key="k", max_retries=0) as client:
            with pytest.raises(openai.APIStatusError):
                client.batches.list()  # (the faults are on: the route's exemption is what the test shows)

        status, body = _get(sim.base_url, "/_sim/submissions?min=x")
        assert status == 400 and "min" in json.dumps(body)
        status, _ = _get(sim.base_url, "/_sim/nothing")
        assert status == 404


def test_submissions_route_keeps_the_api_key_check() -> None:
    with Simulator(SimConfig(require_api_key="sk-debug")) as sim:
        assert _get(sim.base_url, "/_sim/submissions")[0] == 401
        assert _get(sim.base_url, "/_sim/submissions", key="sk-wrong")[0] == 401
        assert _get(sim.base_url, "/_sim/submissions", key="sk-debug")[0] == 200


def test_submissions_route_of_a_sim_in_another_process(spawn: type[SimProcess]) -> None:  # noqa: F811
    proc = spawn("--port", "0", "--per-request-s", "0")
    base = proc.urls["ANTHROPIC_BASE_URL"]
    _submit(base)
    status, body = _get(base, "/_sim/submissions")
    assert status == 200
    assert body["submissions"] == {"openai": {"o1": 2, "o2": 1}, "anthropic": {"a1": 1}}
    code, err = proc.stop(signal.SIGTERM)
    assert code == 0 and "Traceback" not in err
