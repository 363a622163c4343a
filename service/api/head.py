"""HEAD on any GET route: answered as GET would be, without the body (RFC 9110, section 9.3.2).

FastAPI registers GET routes for GET alone, so HEAD was a 405 with an empty Allow header. This
pure ASGI middleware runs the GET and sends its status and headers (Content-Length included)
with an empty body, so monitors, link checkers and caches can probe any page or resource.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class HeadAsGet:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def without_body(message: Message) -> None:
            if message["type"] == "http.response.body":
                if not message.get("more_body", False):
                    await send({"type": "http.response.body", "body": b""})
                return
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, without_body)
