"""Everything that differs between LLM batch providers, behind one contract.

- `registry`: the providers by name, one `spec.ProviderSpec` each: credentials'
  variables, the adapter factory, the shapes of lines and results, how progress is
  reported, which failures are permanent. The rest of batchtop asks a spec instead
  of branching on a provider's name.
- `base.ProviderAdapter`: the abstract adapter the engine drives (submit, find a
  submission, list, retrieve, cancel, probe, results), its methods documenting what
  they take, return and raise; `base` also holds the plain values they return.
- `errors`: the typed failures (auth, quota, not found, refused, transient) every
  adapter raises instead of its SDK's exceptions.
- `openai_batches`, `anthropic_batches`, `gemini_batches`: the adapters over the
  official async SDKs (openai, anthropic, google-genai),
  the only modules that import them (only when an adapter is built), each with its
  one `translate` function from SDK exceptions to `errors`.
- `limits` (pure data: endpoints, id rules, caps), `failures` (retry verdicts of
  failed result lines), `streaming` (bounded result lines), `clients` (adapters from
  the config's accounts, and the engine's logging).

Adding a provider: a spec module (`ProviderSpec` subclass), an adapter module
(`ListingAdapter` subclass, or `ProviderAdapter` where the SDK's listing is not
`data`/`has_next_page` pages, as google-genai's is not; with its `translate`), one `register` line in `registry`,
and its entries in `limits`. `providers` never imports `store`, `engine` or a view.
"""
