"""The provider registry and contract: providers come from one place, each fully
described by its spec, and the core never imports an SDK to know about them."""

from __future__ import annotations

import asyncio
import inspect
import subprocess
import sys

import pytest

from batchtop.engine.output_checks import output_text
from batchtop.pricing.estimate import estimate_request, request_body
from batchtop.providers import failures, registry
from batchtop.providers.base import ProviderAdapter, ResultLine
from batchtop.providers.limits import PROVIDERS
from batchtop.providers.spec import ProviderSpec

from conftest import run_batchtop


def test_the_registry_lists_the_providers_the_config_and_validation_know() -> None:
    """`limits.PROVIDERS` (config, intake) and the registry must name the same providers."""
    assert registry.names() == PROVIDERS == ("openai", "anthropic", "gemini")
    assert [s.name for s in registry.specs()] == list(registry.names())
    with pytest.raises(KeyError) as info:
        registry.get("nope")
    assert "unknown provider 'nope' (one of openai, anthropic, gemini)" in str(info.value)
    assert registry.find("nope") is None


def test_the_cli_offers_the_registered_providers() -> None:
    for command in ("enqueue", "quote"):
        r = run_batchtop(command, "--help")
        assert "--provider {openai,anthropic,gemini}" in " ".join(r.stdout.split()), r.stdout


@pytest.mark.parametrize("name", registry.names())
def test_each_spec_builds_its_adapter_over_its_sdk(name: str) -> None:
    spec = registry.get(name)
    assert spec.key_env.endswith("_API_KEY") and spec.base_url_env.endswith("_BASE_URL")
    assert spec.caps.max_requests > 0

    async def build() -> ProviderAdapter:
        adapter = spec.adapter("sk-test", "http://127.0.0.1:9", account="work", max_retries=0)
        await adapter.close()
        return adapter

    adapter = asyncio.run(build())
    assert isinstance(adapter, ProviderAdapter) and adapter.provider == name and adapter.account == "work"


def test_importing_the_engine_the_registry_or_the_cli_imports_no_sdk() -> None:
    """The SDKs are the adapters' alone, imported when an adapter is built."""
    code = (
        "import sys, batchtop.cli, batchtop.engine.tick, batchtop.providers.registry, batchtop.providers.failures;"
        "print(sorted(m for m in ('openai', 'anthropic', 'httpx2', 'google.genai') if m in sys.modules))"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "[]"


def test_the_engine_reads_no_sdk_exception() -> None:
    from batchtop.engine import tick

    source = inspect.getsource(tick)
    for word in ("import openai", "import anthropic", "status_code", "getattr(exc"):
        assert word not in source


def test_every_adapter_method_documents_what_it_takes_returns_and_raises() -> None:
    for name in sorted(ProviderAdapter.__abstractmethods__):
        doc = inspect.getdoc(getattr(ProviderAdapter, name)) or ""
        assert doc, name
        if name == "close":
            continue
        params = [p for p in inspect.signature(getattr(ProviderAdapter, name)).parameters if p != "self"]
        assert "Raises:" in doc, name
        if params:
            assert "Args:" in doc and all(f"{p}:" in doc for p in params), name
        if name not in ("probe",):
            assert "Returns:" in doc, name


class _Plain(ProviderSpec):
    """A provider of one endpoint whose lines put everything in `request`."""

    name = "plain"
    key_env = "PLAIN_API_KEY"
    base_url_env = "PLAIN_BASE_URL"
    reports_counts_while_running = False
    input_fields = ("prompt",)
    output_cap_fields = ("limit",)
    billed_field = "request"

    def adapter(self, api_key, base_url, *, account="default", timeout=1.0, max_retries=None):  # type: ignore[no-untyped-def]
        raise NotImplementedError

    def owns_endpoint(self, endpoint: str) -> bool:
        return endpoint == "/plain"

    def result_text(self, endpoint, body):  # type: ignore[no-untyped-def]
        return (body["out"], None) if "out" in body else (None, "no out")

    def permanent_failure(self, line: ResultLine) -> bool:
        return line.error_code == "bad"

    def truncated(self, body) -> bool:  # type: ignore[no-untyped-def]
        return False


def test_a_registered_provider_is_asked_for_its_shapes() -> None:
    """What estimates, output checks and failure verdicts know of a provider is its spec's."""
    registry.register(_Plain())
    try:
        assert registry.names()[-1] == "plain" and registry.for_endpoint("/plain").name == "plain"
        body = request_body("plain", {"request": {"prompt": "x" * 40, "limit": 7, "ignored": "y" * 400}})
        est = estimate_request("/plain", body)
        assert (est.input_tokens, est.output_tokens, est.output_basis) == (10, 7, "cap")  # 40 characters of prompt only
    finally:
        registry._SPECS.pop("plain", None)
    assert "plain" not in registry.names()


def test_a_registered_provider_judges_its_own_failures_and_outputs() -> None:
    registry.register(_Plain())
    try:
        bad = ResultLine("c1", "errored", None, "bad: no", "bad")
        odd = ResultLine("c2", "errored", None, "odd: no", "odd")
        broke = ResultLine("c3", "errored", None, "insufficient_quota: pay", "insufficient_quota")
        assert failures.verdicts("plain", [bad, odd, broke]) == {"c1": failures.PERMANENT, "c3": failures.QUOTA}
        assert output_text("plain", "/plain", {"out": "hi"}) == ("hi", None)
    finally:
        registry._SPECS.pop("plain", None)
