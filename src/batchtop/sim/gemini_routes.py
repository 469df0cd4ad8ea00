"""Gemini Batch Mode routes, as google-genai calls them against a base URL that is the
API root: the SDK adds the version (``v1`` by default in google-genai 3.x, ``v1beta``
with ``GOOGLE_GENAI_API_VERSION=beta`` or ``HttpOptions(api_version=...)``; both are
served), and uploads go to ``upload/<version>/files``. The root is ``/gemini`` on the
simulator's port, because OpenAI's routes own ``/v1/batches`` and ``/v1/files`` there.
Paths below are under ``/gemini/<version>``:

- ``POST models/{model}:batchGenerateContent`` creates a batch;
- ``GET batches``, ``GET|DELETE batches/{id}``, ``POST batches/{id}:cancel``;
- ``POST /gemini/upload/<version>/files``: the resumable upload protocol, a ``start`` (metadata,
  answered with ``X-Goog-Upload-URL``) then ``upload`` chunks at ``X-Goog-Upload-Offset``,
  the last one ``upload, finalize`` (answered with the file); chunk requests carry no
  API key (the SDK sends only the upload headers there), the upload id stands for it;
- ``GET files``, ``GET|DELETE files/{id}``, ``GET files/{id}:download?alt=media`` (the bytes).

aiohttp's ``{name}`` matches a ``:verb`` suffix too, so the routes with one take the
whole tail and split it.
"""

from __future__ import annotations

from aiohttp import web

from .errors import json_ok
from .gemini_state import ROOT, VERSIONS, chunks
from .http_helpers import int_query, origin, read_json, stream_bytes
from .middleware import APP_SIM
from .scripted import create_refusal
from .state import GEMINI, StateError

routes = web.RouteTableDef()


def _token(request: web.Request) -> int | None:
    raw = request.query.get("pageToken")
    if not raw:
        return None
    try:
        return int(raw)
    except ValueError:
        raise StateError(400, f"Invalid page token '{raw}'.") from None


def _page(key: str, data: list[object], last: int | None) -> dict[str, object]:
    body: dict[str, object] = {key: data}
    if last is not None:
        body["nextPageToken"] = str(last)
    return body


async def batch_generate_content(request: web.Request) -> web.Response:
    sim = request.app[APP_SIM]
    model, _, verb = request.match_info["tail"].rpartition(":")
    if verb != "batchGenerateContent" or not model:
        raise web.HTTPNotFound()
    body = await read_json(request)
    if sim.config.create_error is not None:
        status, message, _ = create_refusal(GEMINI, sim.config.create_error)
        raise StateError(status, message)
    batch = body.get("batch") if isinstance(body, dict) else None
    if not isinstance(batch, dict):
        raise StateError(400, "* BatchGenerateContentRequest.batch: batch is required.")
    return json_ok(GEMINI, sim.state.create_gemini_batch(model, batch, origin(request)))


async def list_batches(request: web.Request) -> web.Response:
    sim = request.app[APP_SIM]
    data, last = sim.state.list_gemini_batches(
        int_query(request, "pageSize", 50, 1, 1000), _token(request), origin(request)
    )
    return json_ok(GEMINI, _page("operations", data, last))


async def get_batch(request: web.Request) -> web.Response:
    sim = request.app[APP_SIM]
    return json_ok(GEMINI, sim.state.get_gemini_batch(request.match_info["batch_id"], origin(request)))


async def cancel_batch(request: web.Request) -> web.Response:
    sim = request.app[APP_SIM]
    batch_id, _, verb = request.match_info["tail"].rpartition(":")
    if verb != "cancel" or not batch_id:
        raise web.HTTPNotFound()
    sim.state.cancel_gemini_batch(batch_id)
    return json_ok(GEMINI, {})


async def delete_batch(request: web.Request) -> web.Response:
    sim = request.app[APP_SIM]
    sim.state.delete_gemini_batch(request.match_info["batch_id"])
    return json_ok(GEMINI, {})


async def upload(request: web.Request) -> web.Response:
    """Both halves of the resumable protocol: a start (no upload id) or a chunk."""
    sim = request.app[APP_SIM]
    command = {c.strip() for c in request.headers.get("X-Goog-Upload-Command", "").lower().split(",")}
    upload_id = request.query.get("upload_id")
    if upload_id is None:
        if request.headers.get("X-Goog-Upload-Protocol", "").lower() != "resumable" or command != {"start"}:
            raise StateError(400, "Only the resumable upload protocol is supported (X-Goog-Upload-Protocol: resumable).")
        try:
            size = int(request.headers.get("X-Goog-Upload-Header-Content-Length", ""))
        except ValueError:
            raise StateError(400, "X-Goog-Upload-Header-Content-Length is required.") from None
        body = await read_json(request)
        meta = (body or {}).get("file") if isinstance(body, dict) else None
        meta = meta if isinstance(meta, dict) else {}
        # google-genai sends the File as it dumps it, in snake_case; proto JSON takes both
        mime = (
            request.headers.get("X-Goog-Upload-Header-Content-Type")
            or meta.get("mimeType") or meta.get("mime_type") or "application/octet-stream"
        )
        new_id = sim.state.gemini_start_upload(meta.get("displayName", meta.get("display_name")), mime, size)
        url = f"{origin(request)}{request.path}?upload_id={new_id}&upload_protocol=resumable"
        return web.Response(status=200, headers={"X-Goog-Upload-URL": url, "X-Goog-Upload-Status": "active"})
    if "upload" not in command:
        raise StateError(400, f"Unknown X-Goog-Upload-Command {sorted(command)}.")
    try:
        offset = int(request.headers.get("X-Goog-Upload-Offset", ""))
    except ValueError:
        raise StateError(400, "X-Goog-Upload-Offset is required.") from None
    data = await request.read()
    done = sim.state.gemini_upload_chunk(upload_id, offset, data, "finalize" in command, origin(request))
    if done is None:
        return web.Response(status=200, headers={"X-Goog-Upload-Status": "active"})
    return json_ok(GEMINI, {"file": done}, headers={"X-Goog-Upload-Status": "final"})


async def list_files(request: web.Request) -> web.Response:
    sim = request.app[APP_SIM]
    data, last = sim.state.gemini_list_files(
        int_query(request, "pageSize", 10, 1, 100), _token(request), origin(request)
    )
    return json_ok(GEMINI, _page("files", data, last))


async def get_file(request: web.Request) -> web.StreamResponse:
    sim = request.app[APP_SIM]
    file_id, _, verb = request.match_info["tail"].partition(":")
    record = sim.state.gemini_file(file_id)
    if not verb:
        return json_ok(GEMINI, record.to_json(origin(request)))
    if verb != "download":
        raise web.HTTPNotFound()
    if not record.generated:
        raise StateError(400, "Only generated files can be downloaded.")
    return await stream_bytes(request, chunks(record.content), content_type="application/octet-stream",
                              length=len(record.content))


async def delete_file(request: web.Request) -> web.Response:
    sim = request.app[APP_SIM]
    sim.state.gemini_delete_file(request.match_info["file_id"])
    return json_ok(GEMINI, {})


for _version in VERSIONS:
    _api = f"{ROOT}/{_version}"
    routes.post(f"{_api}/models/{{tail}}")(batch_generate_content)
    routes.get(f"{_api}/batches")(list_batches)
    routes.get(f"{_api}/batches/{{batch_id}}")(get_batch)
    routes.post(f"{_api}/batches/{{tail}}")(cancel_batch)
    routes.delete(f"{_api}/batches/{{batch_id}}")(delete_batch)
    routes.post(f"{ROOT}/upload/{_version}/files")(upload)
    routes.get(f"{_api}/files")(list_files)
    routes.get(f"{_api}/files/{{tail}}")(get_file)
    routes.delete(f"{_api}/files/{{file_id}}")(delete_file)
