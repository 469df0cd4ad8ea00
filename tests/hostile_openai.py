"""A hostile OpenAI batch endpoint: a real HTTP server on 127.0.0.1 that the official
SDK talks to, answering the Files and Batches routes with terminal escape sequences in
everything a provider controls (batch ids, error codes and messages).

It is the provider as an attacker (or a compromised proxy) would be: well-formed JSON,
hostile strings. The engine stores what it says, and every text view must show it
without letting a byte of an escape sequence reach the terminal.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# OSC 0 (window title) and OSC 52 (clipboard write), both ended by ST (ESC \), which the
# old BEL-only filter let through; CSI clear-screen in its 7-bit and 8-bit (C1) forms.
TITLE = "\x1b]0;owned\x1b\\"
CLIPBOARD = "\x1b]52;c;cm0gLXJmIH4=\x1b\\"
CLEAR = "\x1b[2J\x9b2J"
BATCH_ID = f"batch_{TITLE}evil"
ERROR_CODE = f"code{CLEAR}"
ERROR_MESSAGE = f"input rejected {CLIPBOARD}{CLEAR}\x07 see docs"


class HostileOpenAI:
    """Serves until `stop`. `refuse_uploads` answers every upload 400 with a hostile
    message (the buffer is held with it); `poll_status` answers every poll of a batch
    with that HTTP status and a hostile message (the tick fails with it, on stderr)."""

    def __init__(self, *, refuse_uploads: bool = False, poll_status: int | None = None) -> None:
        self.refuse_uploads = refuse_uploads
        self.poll_status = poll_status
        self.created_at = int(time.time())
        self.metadata: dict[str, Any] = {}
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def _body(self) -> bytes:
                return self.rfile.read(int(self.headers.get("content-length") or 0))

            def _send(self, status: int, doc: Any) -> None:
                data = json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                body = self._body()
                if self.path.startswith("/v1/files"):
                    if owner.refuse_uploads:
                        error = {"message": ERROR_MESSAGE, "type": "invalid_request_error", "code": ERROR_CODE}
                        self._send(400, {"error": error})
                        return
                    self._send(200, {"id": "file-in", "object": "file", "bytes": len(body), "created_at": owner.created_at,
                                     "filename": "input.jsonl", "purpose": "batch", "status": "processed"})
                elif self.path.startswith("/v1/batches"):
                    owner.metadata = json.loads(body).get("metadata") or {}
                    self._send(200, owner.batch())
                else:
                    self._send(404, {"error": {"message": "no route", "type": "invalid_request_error"}})

            def do_GET(self) -> None:
                if self.path.startswith("/v1/batches/") and owner.poll_status:
                    error = {"message": ERROR_MESSAGE, "type": "invalid_request_error", "code": ERROR_CODE}
                    self._send(owner.poll_status, {"error": error})
                elif self.path.startswith("/v1/batches/"):
                    self._send(200, owner.batch())
                elif self.path.startswith("/v1/batches"):
                    self._send(200, {"object": "list", "data": [owner.batch()], "has_more": False})
                elif self.path.startswith("/v1/files"):
                    self._send(200, {"object": "list", "data": [], "has_more": False})
                else:
                    self._send(404, {"error": {"message": "no route", "type": "invalid_request_error"}})

            def do_DELETE(self) -> None:
                self._send(200, {"id": "file-in", "object": "file", "deleted": True})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def batch(self) -> dict[str, Any]:
        """The one batch it knows: failed at validation, with a hostile id and errors."""
        return {
            "id": BATCH_ID, "object": "batch", "endpoint": "/v1/chat/completions", "completion_window": "24h",
            "status": "failed", "input_file_id": "file-in", "created_at": self.created_at,
            "failed_at": self.created_at, "metadata": self.metadata,
            "errors": {"object": "list", "data": [{"code": ERROR_CODE, "message": ERROR_MESSAGE, "line": 1}]},
            "request_counts": {"total": 0, "completed": 0, "failed": 0},
        }

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def start(self) -> HostileOpenAI:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
