"""The provider contract's typed errors: each SDK's failure on the wire comes out of
the adapter as one of `batchtop.providers.errors`, never as the SDK's own exception.

The real SDK clients talk HTTP to the simulator, which answers each wire case: a
wrong key, a forgotten batch, a forced status (`x-sim-fault`), a refused create
(`create_error`), a closed port. No SDK retries, so each call shows what it got.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import anthropic
import openai
import pytest

from batchtop.providers import registry
from batchtop.providers.anthropic_batches import AnthropicBatches
from batchtop.providers.base import ProviderAdapter, RemoteBatch
from batchtop.providers.errors import (
    ProviderAuthError,
    ProviderError,
    ProviderNotFound,
    ProviderQuota,
    ProviderRefused,
    ProviderTransient,
    classify_status,
)
from batchtop.providers.openai_batches import OpenAIBatches
from batchtop.sim import SimConfig, Simulator

from engine_helpers import anthropic_lines, openai_lines

PROVIDERS = ("openai", "anthropic")
T = TypeVar("T")


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator(SimConfig(per_request_s=1000.0)) as simulator:  # batches stay in flight
        yield simulator


def _url(sim: Simulator, provider: str) -> str:
    return sim.openai_base_url if provider == "openai" else sim.anthropic_base_url


def adapter(sim: Simulator, provider: str, *, key: str = "sk-test", headers: dict[str, str] | None = None) -> ProviderAdapter:
    """The provider's adapter over its real SDK client at the simulator; `headers` go
    with every call (the simulator's `x-sim-fault` forces an answer's status)."""
    if not headers:
        return registry.get(provider).adapter(key, _url(sim, provider), max_retries=0)
    if provider == "openai":
        return OpenAIBatches(openai.AsyncOpenAI(api_key=key, base_url=_url(sim, provider), max_retries=0, default_headers=headers))
    return AnthropicBatches(
        anthropic.AsyncAnthropic(api_key=key, base_url=_url(sim, provider), max_retries=0, default_headers=headers)
    )


def call(make: Callable[[], ProviderAdapter], use: Callable[[ProviderAdapter], Awaitable[T]]) -> T:
    """One adapter call on a loop of its own, the client closed after it."""

    async def go() -> T:
        a = make()
        try:
            return await use(a)
        finally:
            await a.close()

    return asyncio.run(go())


def lines(provider: str, n: int = 2) -> tuple[str, list[bytes]]:
    rows = openai_lines(n) if provider == "openai" else anthropic_lines(n)
    endpoint = "/v1/chat/completions" if provider == "openai" else "/v1/messages"
    return endpoint, [json.dumps(row).encode() + b"\n" for row in rows]


def submit(a: ProviderAdapter, provider: str) -> Awaitable[RemoteBatch]:
    endpoint, body = lines(provider)
    return a.submit("uid-1", endpoint, body)


def raised(make: Callable[[], ProviderAdapter], use: Callable[[ProviderAdapter], Awaitable[Any]]) -> ProviderError:
    """The typed error the call raised; it must be one, chained to the SDK's own."""
    with pytest.raises(ProviderError) as info:
        call(make, use)
    assert info.value.__cause__ is not None, "raised from the SDK exception it translates"
    assert not isinstance(info.value, (openai.APIError, anthropic.APIError))
    return info.value


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_refused_key_is_an_auth_error_on_every_call(sim: Simulator, provider: str) -> None:
    sim.config.require_api_key = "sk-right"
    def make() -> Any:
        return adapter(sim, provider, key="sk-wrong")
    for use in (lambda a: a.probe(), lambda a: a.list_recent(0.0, {"b"}), lambda a: submit(a, provider)):
        error = raised(make, use)
        assert type(error) is ProviderAuthError and error.status_code == 401
        assert error.source == "AuthenticationError" and "sk-wrong" not in str(error)
    assert not sim.batches(), "nothing was created"


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_forgotten_batch_is_not_found_for_retrieve_cancel_and_results(sim: Simulator, provider: str) -> None:
    batch = call(lambda: adapter(sim, provider), lambda a: submit(a, provider))
    sim.forget(batch.id)
    for use in (lambda a: a.retrieve(batch.id), lambda a: a.cancel(batch.id)):
        error = raised(lambda: adapter(sim, provider), use)
        assert isinstance(error, ProviderNotFound) and error.batch_id == batch.id and error.detail.startswith("404 ")

    async def results(a: ProviderAdapter) -> None:
        ended = RemoteBatch(batch.id, "completed", 2, 2, 0, batch.created_at, output_file_id="file-gone")
        async for _ in a.results(ended):
            pass

    error = raised(lambda: adapter(sim, provider), results)
    assert isinstance(error, ProviderNotFound) and error.batch_id == batch.id and "404 for its result" in error.detail


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("status", [500, 503, 529, 408, 409, 429])
def test_server_errors_timeouts_conflicts_and_rate_limits_are_transient(sim: Simulator, provider: str, status: int) -> None:
    """With the provider's Retry-After, which the engine's backoff honours."""
    def make() -> Any:
        return adapter(sim, provider, headers={"x-sim-fault": str(status)})
    for use in (lambda a: a.list_recent(0.0, {"b"}), lambda a: a.probe(), lambda a: a.retrieve("batch_x")):
        error = raised(make, use)
        assert type(error) is ProviderTransient and error.status_code == status
        assert error.retry_after is not None and 0 < error.retry_after < 1  # retry-after-ms, read first


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_rate_limit_on_a_create_is_a_refusal_of_that_batch(sim: Simulator, provider: str) -> None:
    """429 at create: this batch was not taken (its buffer waits), not a provider outage."""
    error = raised(lambda: adapter(sim, provider, headers={"x-sim-fault": "429"}), lambda a: submit(a, provider))
    assert type(error) is ProviderRefused and error.retry_after is not None
    assert error.reason.startswith(("upload refused: 429", "create refused: 429"))
    assert not sim.batches()


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("kind", ["invalid_request", "rate_limit"])
def test_a_refused_create_is_a_refusal_and_leaves_nothing_behind(sim: Simulator, provider: str, kind: str) -> None:
    sim.config.create_error = kind
    error = raised(lambda: adapter(sim, provider), lambda a: submit(a, provider))
    assert type(error) is ProviderRefused and error.reason.startswith("create refused: ")
    assert not sim.batches()
    if provider == "openai":  # the upload made for it is deleted
        files = call(lambda: adapter(sim, provider), lambda a: a.client.files.list(purpose="batch"))  # type: ignore[attr-defined]
        assert not files.data


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("kind", ["insufficient_quota", "billing"])
def test_an_account_out_of_quota_or_credit_is_a_quota_error(sim: Simulator, provider: str, kind: str) -> None:
    """OpenAI: 429 `insufficient_quota`, 400 `billing_hard_limit_reached`; Anthropic: a 400
    whose message says the credit balance is too low, a 402 `billing_error`."""
    sim.config.create_error = kind
    error = raised(lambda: adapter(sim, provider), lambda a: submit(a, provider))
    assert type(error) is ProviderQuota and error.reason.startswith("create refused: ")
    assert not sim.batches()


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_server_error_on_a_create_is_transient(sim: Simulator, provider: str) -> None:
    """No answer to go by: the batch may exist, which the next pass's reconcile settles."""
    sim.config.create_error = "server_error"
    error = raised(lambda: adapter(sim, provider), lambda a: submit(a, provider))
    assert type(error) is ProviderTransient and error.status_code == 500


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_forbidden_listing_is_a_refusal_not_an_auth_error(sim: Simulator, provider: str) -> None:
    """403 is a key that works but may not do this (region, permission): probing again
    would not fix it, so it is not the 401 path."""
    error = raised(lambda: adapter(sim, provider, headers={"x-sim-fault": "403"}), lambda a: a.probe())
    assert type(error) is ProviderRefused and error.status_code == 403


@pytest.mark.parametrize("provider", PROVIDERS)
def test_no_connection_is_transient(provider: str) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}" + ("/v1" if provider == "openai" else "")
    def make() -> Any:
        return registry.get(provider).adapter("sk-test", url, max_retries=0, timeout=5.0)
    error = raised(make, lambda a: a.probe())
    assert type(error) is ProviderTransient and error.status_code is None and error.source == "APIConnectionError"


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_cancel_of_a_batch_that_ended_returns_it_as_it_is(sim: Simulator, provider: str) -> None:
    """The provider refuses to cancel an ended batch (400/409): the contract's cancel
    answers with the batch instead, so the engine needs no status code."""
    sim.config.per_request_s = 0.0
    batch = call(lambda: adapter(sim, provider), lambda a: submit(a, provider))
    sim.advance(10.0)
    ended = call(lambda: adapter(sim, provider), lambda a: a.retrieve(batch.id))
    assert ended.status == "completed"
    again = call(lambda: adapter(sim, provider), lambda a: a.cancel(batch.id))
    assert again.id == batch.id and again.status == "completed"


def test_the_status_rule_both_translations_share() -> None:
    assert type(classify_status(401, "no")) is ProviderAuthError
    assert type(classify_status(404, "gone", batch_id="b")) is ProviderNotFound
    assert type(classify_status(404, "no such route")) is ProviderRefused  # no batch named: not a lost one
    assert type(classify_status(404, "no file", creating="create", batch_id="b")) is ProviderRefused
    assert type(classify_status(429, "slow down")) is ProviderTransient
    assert type(classify_status(429, "quota", code="insufficient_quota")) is ProviderQuota
    assert type(classify_status(400, "Your credit balance is too low to access the API")) is ProviderQuota
    assert type(classify_status(402, "disabled", kind="billing_error")) is ProviderQuota
    assert type(classify_status(409, "busy", creating="create")) is ProviderTransient
    assert type(classify_status(422, "bad")) is ProviderRefused
    assert type(classify_status(302, "moved")) is ProviderTransient
    key = "sk-" + "a" * 40
    from batchtop.redaction import remember_secret

    remember_secret(key)
    assert key not in str(classify_status(400, f"bad key {key}", creating="create"))
