"""What batchtop knows about one provider, beyond its adapter: `ProviderSpec`.

Everything that differs between providers and is not a call to them lives on the
provider's spec, so the rest of batchtop asks the spec (found in
`providers.registry`) instead of branching on the provider's name:

- credentials: the variables its key and base URL are read from;
- the SDK client and adapter (`adapter`), imported only when one is built;
- the shape of its native batch lines, for the estimates: which part is billed, what
  the model reads, which field caps the output (`request_body`, `prompt_parts`,
  `output_cap`, `outputs`);
- the shape of its results: where a success's text is and whether it was cut short
  (`result_text`, `truncated`);
- how its batches report progress (`reports_counts_while_running`);
- which of its failed result lines no retry can fix (`permanent_failure`).

A spec module never imports its SDK at import time: listing the providers (the CLI's
choices, the status document) stays fast.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any

from batchtop.providers.limits import CAPS, BatchCaps

if TYPE_CHECKING:
    from batchtop.providers.base import ProviderAdapter, ResultLine

TIMEOUT = 120.0
"""Seconds per provider call: the SDKs' 600 s default would let a hung provider
freeze its pass for ten minutes before the backoff takes over."""


class ProviderSpec(ABC):
    """One provider's description. Subclasses set the attributes and implement the
    abstract methods; one instance of each is registered in `providers.registry`.

    Attributes:
        name: the provider's name in the CLI, the config, the store and the status
            document ("openai").
        key_env: the variable the SDK reads its key from by default ("OPENAI_API_KEY");
            a config account may name another.
        base_url_env: the variable the SDK reads its base URL from by default.
        reports_counts_while_running: the provider counts succeeded/failed requests
            while a batch runs. Anthropic reports no counts until the batch ends, so a
            view shows "counted at end" rather than a bar stuck at zero.
        input_fields: the fields of a request body the model reads (their characters
            make the input estimate).
        output_cap_fields: the fields that cap a request's output tokens, first found wins.
        choices_field: the field asking for several outputs per request (OpenAI `n`),
            or None where the provider has none.
        billed_field: the key of a native batch line that holds the request body
            (OpenAI `body`, Anthropic `params`).
        sdk_loggers: the loggers of the provider's SDK, quieted unless verbose.
    """

    name: str
    key_env: str
    base_url_env: str
    reports_counts_while_running: bool = True
    input_fields: tuple[str, ...] = ()
    output_cap_fields: tuple[str, ...] = ()
    choices_field: str | None = None
    billed_field: str = "body"
    sdk_loggers: tuple[str, ...] = ()

    @property
    def caps(self) -> BatchCaps:
        """The most requests and bytes one batch may hold (`providers.limits`)."""
        return CAPS[self.name]

    @abstractmethod
    def adapter(
        self,
        api_key: str,
        base_url: str | None,
        *,
        account: str = "default",
        timeout: float = TIMEOUT,
        max_retries: int | None = None,
    ) -> ProviderAdapter:
        """A new adapter over the provider's official async SDK client.

        The SDK is imported here, on first use, so that commands which make no provider
        call (`--once --no-refresh`) never pay for it.

        Args:
            api_key: the key, handed to the SDK client only (never stored or printed).
            base_url: where the API is; None leaves the SDK to its default (and to
                `base_url_env`).
            account: the config account the key belongs to.
            timeout: seconds per call.
            max_retries: the SDK's own retries; None keeps the SDK's policy.

        Returns:
            The adapter, not yet connected (the client connects on its first call).

        Raises:
            Nothing for a bad key or an unreachable URL: those surface on the first
            call, as `providers.errors`.
        """

    @abstractmethod
    def owns_endpoint(self, endpoint: str) -> bool:
        """Whether `endpoint` (a batch line's API path) is one of this provider's; an
        estimate given only an endpoint uses the first provider that owns it."""

    @abstractmethod
    def result_text(self, endpoint: str, body: dict[str, Any]) -> tuple[str | None, str | None]:
        """The model's text in one successful result.

        Args:
            endpoint: the API path the request went to (the response shape follows it).
            body: the response object, or the whole result line as the provider wrote it.

        Returns:
            (the text, None); or (None, why there is none: "no text block in the
            response", "the model refused: ..."); or (None, None) for an endpoint with
            no text output (embeddings), where there is nothing to check.
        """

    @abstractmethod
    def permanent_failure(self, line: ResultLine) -> bool:
        """Whether a failed request's line (outcome errored, not out of quota) says the
        provider rejected the request itself (a bad request, an unknown model, too
        large), so it becomes a dead letter at once instead of being retried
        (`providers.failures`)."""

    @abstractmethod
    def truncated(self, body: dict[str, Any]) -> bool:
        """Whether a successful result stopped at its token limit (the response
        object or the whole result line), so a broken JSON output can say why."""

    def request_body(self, line: dict[str, Any]) -> dict[str, Any]:
        """The part of a native batch line the provider bills for (`billed_field`), or
        {} when the line has none."""
        body = line.get(self.billed_field)
        return body if isinstance(body, dict) else {}

    def prompt_parts(self, body: dict[str, Any]) -> list[Any]:
        """The values the model reads in a request body (`input_fields`, in order)."""
        return [body[k] for k in self.input_fields if body.get(k) is not None]

    def output_cap(self, body: dict[str, Any]) -> int | None:
        """The output-token cap a request body sets for each output, if it sets one."""
        for key in self.output_cap_fields:
            cap = body.get(key)
            if isinstance(cap, int) and not isinstance(cap, bool) and cap > 0:
                return cap
        return None

    def outputs(self, body: dict[str, Any]) -> int:
        """How many outputs a request body asks for (1 unless `choices_field` says more)."""
        choices = body.get(self.choices_field) if self.choices_field else None
        return choices if isinstance(choices, int) and not isinstance(choices, bool) and choices > 1 else 1
