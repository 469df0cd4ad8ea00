"""Provider simulator: a local HTTP server the official ``openai`` and
``anthropic`` SDKs talk to unchanged, with knobs for timing, failures and faults."""

from .clock import Clock, ManualClock
from .config import SimConfig
from .server import Simulator, serve_forever
from .state import LogRecord

__all__ = ["Clock", "LogRecord", "ManualClock", "SimConfig", "Simulator", "serve_forever"]
