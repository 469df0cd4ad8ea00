"""batchtop: operate LLM work through the providers' batch APIs.

The public Python API is exposed lazily so that `import batchtop` (and the
`--once --no-refresh` path) stays fast and imports neither the SDKs nor Textual.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Client", "EnqueueError", "__version__"]

if TYPE_CHECKING:  # pragma: no cover
    from batchtop.errors import EnqueueError
    from batchtop.intake.client import Client


def __getattr__(name: str) -> Any:
    if name == "Client":
        from batchtop.intake.client import Client

        return Client
    if name == "EnqueueError":
        from batchtop.errors import EnqueueError

        return EnqueueError
    raise AttributeError(f"module 'batchtop' has no attribute {name!r}")
