"""Security headers on every HTTP response: pages, JSON, errors and SSE streams.

The policy allows only this origin: the dashboard's scripts, styles and API calls come
from it (no CDN, no inline code: the dashboard sets styles through the CSSOM), and the
/docs page's one inline script and style are allowed by their hashes. Nothing may frame
a page (clickjacking), and browsers must not guess content types.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dagq.api.docs_page import INLINE_HASHES

CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'none'",
    " ".join(["script-src 'self'", *INLINE_HASHES["script"]]),
    " ".join(["style-src 'self'", *INLINE_HASHES["style"]]),
    "img-src 'self' data:",  # the dashboard's favicon is a data: URL
    "connect-src 'self'",  # fetch and EventSource to the API itself
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
])

SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",  # frame-ancestors for browsers that predate CSP 2
    "Referrer-Policy": "no-referrer",
}


class SecurityHeadersMiddleware:
    """Add SECURITY_HEADERS to each response start, keeping any a route set itself.

    Responses of the Exception handler (500) do not pass through user middleware:
    errors.server_error adds the same headers itself."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)
