"""Who may use the console, and what its pages may do in a browser.

**Login: HTTP Basic, not a session cookie.** Browsers keep Basic credentials per origin
(scheme, host *and port*), but cookies ignore the port (RFC 6265, section 8.5). A
session cookie for ``127.0.0.1:8070`` would therefore go with every request to any port of
127.0.0.1. That includes a web server another local account runs there, which would get
the operator's session the first time the operator opened it. Basic credentials stay with
the console's own origin. Logging out is closing the browser (or its private window).

**Actions need a token only the console's pages hold.** A browser sends remembered Basic
credentials on cross-site requests too. "Same-site" also ignores the port, so SameSite
would not help either. So every request that changes something (any method but GET/HEAD)
must:

* carry ``X-CSRF-Token``, a random token the console makes when it starts. Its pages put
  it in htmx's ``hx-headers``. Another origin cannot read those pages, so it cannot know
  the token, and it cannot set the header without a CORS preflight that is never granted;
* not be marked cross-site by the browser (``Sec-Fetch-Site``) nor come from another
  ``Origin``.

The token changes when the console restarts: a page left open must be reloaded, and its
refusal says so.

**The Host header must name the console** (127.0.0.1 or localhost, on the console's
port). A DNS-rebinding page has another host name, and is refused before anything runs.

**Every response carries a strict Content-Security-Policy.** Scripts come only from the
console itself (``/vendor``, ``/static``): no inline script, no ``eval``, no frames, no
plugins, forms and fetches to the console only. Pages escape every value they did not
write themselves (Jinja2's autoescape, and nothing is marked ``|safe``). The CSP is the
second wall, for the day one slips through.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Iterable
from typing import Any

from starlette.responses import PlainTextResponse, Response

CSRF_HEADER = "X-CSRF-Token"
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    ]
)
#: Sent with every response, refusals and static files included.
SECURITY_HEADERS: list[tuple[bytes, bytes]] = [
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
]
SAFE_METHODS = ("GET", "HEAD")
#: What ``Sec-Fetch-Site`` may say of a request that changes something.
SAME_ORIGIN = (b"same-origin", b"none")


def new_csrf_token() -> str:
    return secrets.token_urlsafe(32)


def allowed_hosts(host: str, port: int) -> frozenset[bytes]:
    """Host header values that name the console: its address, and localhost, on its port."""
    return frozenset(f"{name}:{port}".encode() for name in {host, "localhost", "127.0.0.1"})


class Guard:
    """ASGI middleware: the Host check, the login, the action token, the security headers."""

    def __init__(self, app: Any, username: str, password: str, csrf_token: str, hosts: Iterable[bytes] | None):
        self.app = app
        self.expected = (username.encode(), password.encode())
        self.csrf_token = csrf_token.encode()
        self.hosts = frozenset(hosts) if hosts is not None else None

    def _authorized(self, header: bytes) -> bool:
        if header[:6].lower() != b"basic ":
            return False
        try:
            user, _, password = base64.b64decode(header[6:], validate=True).partition(b":")
        except ValueError:
            return False
        return secrets.compare_digest(user, self.expected[0]) & secrets.compare_digest(password, self.expected[1])

    def refusal(self, scope: dict, headers: dict[bytes, bytes]) -> Response | None:
        """The response that refuses this request, or None to let it through."""
        if self.hosts is not None and headers.get(b"host", b"") not in self.hosts:
            return PlainTextResponse("this is the cdcpipe console: open it at http://127.0.0.1:<its port>", status_code=421)
        if not self._authorized(headers.get(b"authorization", b"")):
            return PlainTextResponse(
                "the cdcpipe console needs its login: user admin, password from 'cdcpipe secret console'",
                status_code=401,
                headers={"WWW-Authenticate": 'Basic realm="cdcpipe console", charset="UTF-8"'},
            )
        if scope["method"] in SAFE_METHODS:
            return None
        if headers.get(b"sec-fetch-site", b"same-origin") not in SAME_ORIGIN:
            return PlainTextResponse("actions are taken from the console's own pages, not from another site", status_code=403)
        origin = headers.get(b"origin")
        if origin is not None and origin != b"http://" + headers.get(b"host", b""):
            return PlainTextResponse("actions are taken from the console's own pages, not from another origin", status_code=403)
        if not secrets.compare_digest(headers.get(CSRF_HEADER.lower().encode(), b""), self.csrf_token):
            return PlainTextResponse(
                "actions are taken from the console's own pages: this request has no valid action token"
                " (a page open from before the console restarted: reload it)",
                status_code=403,
            )
        return None

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *SECURITY_HEADERS]}
            await send(message)

        refusal = self.refusal(scope, dict(scope["headers"]))
        if refusal is not None:
            return await refusal(scope, receive, send_with_headers)
        await self.app(scope, receive, send_with_headers)
