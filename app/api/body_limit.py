"""Request body limits: small for JSON, the upload limit for multipart files; the 413 is JSON.

A run spec is a few kilobytes, so JSON bodies get their own small limit (``max_json_body_bytes``)
instead of sharing the upload limit: a 100 MB JSON body used to be parsed in full before its 422.
Multipart bodies (``POST /models``, ``POST /datasets``) may carry a file up to
``max_upload_bytes`` plus the form framing. The limit is checked against ``Content-Length`` before
anything is read and against the bytes received for chunked bodies, and the refusal is JSON
shaped like every other error (Starlette's own limit answers ``text/plain``).
"""

from __future__ import annotations

import json

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

UPLOAD_OVERHEAD_BYTES = 1 << 20  # multipart framing and the form fields beside the file


def _detail(kind: str, limit: int) -> list[dict]:
    return [{"loc": ["body"], "msg": f"{kind} larger than the limit of {limit} bytes", "type": "too_large"}]


class _TooLarge(HTTPException):
    # An HTTPException so FastAPI's body parsing passes it through (it turns other errors raised
    # while reading the body into a 400) and its handler answers the same JSON as ``_refuse``.
    def __init__(self, kind: str, limit: int) -> None:
        super().__init__(status_code=413, detail=_detail(kind, limit))


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, *, json_bytes: int, upload_bytes: int) -> None:
        self.app = app
        self.json_bytes = json_bytes
        self.upload_bytes = upload_bytes + UPLOAD_OVERHEAD_BYTES

    def _limit(self, scope: Scope) -> tuple[int, str]:
        headers = dict(scope.get("headers") or [])
        content_type = headers.get(b"content-type", b"").split(b";", 1)[0].strip().lower()
        if content_type == b"multipart/form-data":
            return self.upload_bytes, "upload"
        return self.json_bytes, "JSON body"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit, kind = self._limit(scope)
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _refuse(send, kind, limit)
            return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _TooLarge(kind, limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:
            if started:
                raise
            await _refuse(send, kind, limit)


async def _refuse(send: Send, kind: str, limit: int) -> None:
    body = json.dumps({"detail": _detail(kind, limit)}).encode()
    await send({
        "type": "http.response.start",
        "status": 413,
        # The client may still be sending: tell it this connection will not read the rest.
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close")],
    })
    await send({"type": "http.response.body", "body": body})
