"""The providers batchtop knows, by name: one `ProviderSpec` each.

Everything that depends on which provider a buffer, batch or line belongs to asks
here (`get(name)`) instead of branching on the name; the CLI's `--provider` choices
are `names()`. A new provider is one spec module and one `register` line below.

Importing this module imports no SDK: the specs build their adapters lazily.
"""

from __future__ import annotations

from batchtop.providers.anthropic_spec import AnthropicSpec
from batchtop.providers.gemini_spec import GeminiSpec
from batchtop.providers.openai_spec import OpenAISpec
from batchtop.providers.spec import ProviderSpec

__all__ = ["UnknownProvider", "find", "for_endpoint", "get", "names", "register", "specs"]


class UnknownProvider(KeyError):
    """A provider name no spec is registered under."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name

    def __str__(self) -> str:
        return f"unknown provider {self.name!r} (one of {', '.join(names())})"


_SPECS: dict[str, ProviderSpec] = {}


def register(spec: ProviderSpec) -> ProviderSpec:
    """Add a provider (registration order is the order of `names()`); a second spec
    under the same name replaces the first (a test's provider, say)."""
    _SPECS[spec.name] = spec
    return spec


def get(name: str) -> ProviderSpec:
    """The spec registered as `name`; raises UnknownProvider (a KeyError)."""
    try:
        return _SPECS[name]
    except KeyError:
        raise UnknownProvider(name) from None


def find(name: str) -> ProviderSpec | None:
    """The spec registered as `name`, or None (a view showing a stored row of a
    provider this version does not know)."""
    return _SPECS.get(name)


def names() -> tuple[str, ...]:
    """Every registered provider's name, in registration order."""
    return tuple(_SPECS)


def specs() -> tuple[ProviderSpec, ...]:
    """Every registered spec, in registration order."""
    return tuple(_SPECS.values())


def for_endpoint(endpoint: str) -> ProviderSpec:
    """The first registered provider whose API has `endpoint`; the first provider
    when none has it (an estimate given only an endpoint it does not know)."""
    for spec in _SPECS.values():
        if spec.owns_endpoint(endpoint):
            return spec
    return next(iter(_SPECS.values()))


register(OpenAISpec())
register(AnthropicSpec())
register(GeminiSpec())
