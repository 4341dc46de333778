"""Refuse an oversized request body while it arrives, before anything spools it to memory or disk.

Starlette parses a multipart upload into a spooled file before the endpoint runs, so a size check
in the endpoint comes after the whole body was received. This ASGI middleware answers 413 from
the Content-Length header at once, or, for a body sent without one (chunked), as soon as the
bytes received pass the limit.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
# multipart framing (boundaries, part headers) around the file itself
MULTIPART_OVERHEAD = 16 * 1024


class BodyLimit:
    """Wrap ``app``: POSTs to ``paths`` may carry at most ``max_bytes`` of file (+ framing)."""

    def __init__(self, app: Any, max_bytes: int, paths: Sequence[str]) -> None:
        self.app, self.paths = app, tuple(paths)
        self.max_bytes, self.limit = max_bytes, max_bytes + MULTIPART_OVERHEAD

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            await self.refuse(send)
            return
        received, refused = 0, False

        async def counted() -> dict[str, Any]:
            # past the limit: answer 413 now and tell the app the client left, so it stops
            # reading (an exception here would be turned into a 400 by the body parser)
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit:
                refused = True
                await self.refuse(send)
                return {"type": "http.disconnect"}
            return message

        async def unless_refused(message: dict[str, Any]) -> None:
            if not refused:  # after a 413 the app has nothing more to say
                await send(message)

        try:
            await self.app(scope, counted, unless_refused)
        except Exception:
            if not refused:
                raise

    async def refuse(self, send: Send) -> None:
        body = json.dumps(
            {"error": f"larger than the {self.max_bytes} byte upload limit (serve.max_upload_mb)"}
        ).encode()
        headers = [(b"content-type", b"application/json"), (b"connection", b"close")]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})
