"""``batchtop sim``: the simulator as a foreground process, driven by the real SDKs."""

from __future__ import annotations

import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import anthropic
import openai
import pytest
from google import genai
from google.genai import types as genai_types

STARTUP_TIMEOUT_S = 20.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SimProcess:
    def __init__(self, *args: str) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "batchtop", "sim", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )
        self.urls = self._read_urls()

    def _read_urls(self) -> dict[str, str]:
        """Read ``NAME=url`` lines from stdout (on a thread, so a hang cannot block) until all three are known."""
        lines: queue.Queue[str] = queue.Queue()

        def pump() -> None:
            assert self.proc.stdout is not None
            for line in self.proc.stdout:
                lines.put(line)
            lines.put("")

        threading.Thread(target=pump, daemon=True).start()
        urls: dict[str, str] = {}
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while len(urls) < 3:
            try:
                line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no base URLs printed within {STARTUP_TIMEOUT_S}s") from None
            if not line:
                raise AssertionError(f"sim exited early ({self.proc.wait()}): {self.proc.stderr.read()}")  # type: ignore[union-attr]
            name, _, value = line.strip().partition("=")
            urls[name] = value
        self._lines = lines
        return urls

    def stop(self, sig: int = signal.SIGTERM) -> tuple[int, str]:
        """Send ``sig``; return the exit code and stderr."""
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout=20)
        assert self.proc.stderr is not None
        return code, self.proc.stderr.read()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def spawn() -> Iterator[type[SimProcess]]:
    started: list[SimProcess] = []

    class Tracked(SimProcess):
        def __init__(self, *args: str) -> None:
            super().__init__(*args)
            started.append(self)

    yield Tracked
    for p in started:
        p.kill()


def test_sim_on_a_given_port_serves_the_sdks_and_exits_cleanly_on_sigterm(spawn: type[SimProcess]) -> None:
    port = free_port()
    sim = spawn("--port", str(port), "--per-request-s", "0")
    assert sim.urls == {
        "OPENAI_BASE_URL": f"http://127.0.0.1:{port}/v1",
        "ANTHROPIC_BASE_URL": f"http://127.0.0.1:{port}",
        "GEMINI_BASE_URL": f"http://127.0.0.1:{port}/gemini",
    }
    client = openai.OpenAI(
        base_url=sim.urls["OPENAI_BASE_URL"], api_key="test-key", max_retries=0, _strict_response_validation=True
    )
    with client:
        f = client.files.create(file=("in.jsonl", b'{"custom_id":"a","method":"POST","url":"/v1/chat/completions",'
                                     b'"body":{"model":"gpt-4o-mini","messages":[]}}\n'), purpose="batch")
        batch = client.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h")
        assert client.batches.retrieve(batch.id).status == "completed"
    aclient = anthropic.Anthropic(
        base_url=sim.urls["ANTHROPIC_BASE_URL"], api_key="test-key", max_retries=0, _strict_response_validation=True
    )
    with aclient:
        assert aclient.messages.batches.list().data == []
    gclient = genai.Client(api_key="test-key", http_options=genai_types.HttpOptions(base_url=sim.urls["GEMINI_BASE_URL"]))
    with gclient:
        job = gclient.batches.create(
            model="gemini-2.0-flash", src=[{"contents": [{"parts": [{"text": "hi"}]}], "metadata": {"key": "g"}}]
        )
        assert gclient.batches.get(name=job.name).state == genai_types.JobState.JOB_STATE_SUCCEEDED

    code, err = sim.stop(signal.SIGTERM)
    assert code == 0, err
    assert "Traceback" not in err
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_sim_port_zero_picks_a_port_and_flags_reach_the_config(spawn: type[SimProcess]) -> None:
    sim = spawn("--port", "0", "--api-key", "sk-cli", "--failure-rate", "0", "--fault-rate", "0")
    base = sim.urls["OPENAI_BASE_URL"]
    assert base.startswith("http://127.0.0.1:") and base.endswith("/v1")
    assert int(base.rsplit(":", 1)[1].split("/")[0]) > 0

    with openai.OpenAI(base_url=base, api_key="wrong", max_retries=0, _strict_response_validation=True) as bad:
        with pytest.raises(openai.AuthenticationError):
            bad.batches.list()
    with openai.OpenAI(base_url=base, api_key="sk-cli", max_retries=0, _strict_response_validation=True) as good:
        assert good.batches.list().data == []

    code, err = sim.stop(signal.SIGINT)
    assert code == 0, err
    assert "Traceback" not in err


def test_sim_port_in_use_is_one_clear_error(spawn: type[SimProcess]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = subprocess.run(
            [sys.executable, "-m", "batchtop", "sim", "--port", str(port)],
            capture_output=True, text=True, timeout=30,
        )
    assert proc.returncode == 1
    assert "OPENAI_BASE_URL" not in proc.stdout
    assert "Traceback" not in proc.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in proc.stderr


def test_sim_signalled_right_after_printing_still_exits_cleanly(spawn: type[SimProcess]) -> None:
    for sig in (signal.SIGTERM, signal.SIGINT):
        sim = spawn("--port", "0")
        code, err = sim.stop(sig)
        assert code == 0, err
        assert "Traceback" not in err
