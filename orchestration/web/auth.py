"""Who may use the web monitor: a bearer token, or the session cookie that signing in with it sets.

- The cookie holds an HMAC of the token, never the token: a cookie read off a machine opens the monitor until
  the token changes, but does not give the token away (it is what scripts and other monitors use).
- Every comparison of a secret goes through `hmac.compare_digest`, so that how long a refusal takes says
  nothing about how much of a guess was right.
- A request the cookie authenticates and that changes something (any method but GET and HEAD) must carry an
  `Origin` naming this very host: browsers attach the cookie to a cross-site form POST too (SameSite=Lax lets
  top-level navigations through), and the Origin is what such a POST cannot forge. A bearer token cannot be
  attached by another site's page, so bearer requests need no Origin.
- Without auth (`--no-auth`, loopback only), a page on another site could still reach the loopback address
  from the browser: such requests are refused by the same Origin check, and a `Host` that is not a loopback
  name is refused too (a DNS-rebinding page reaches 127.0.0.1 under its own host name).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import urlsplit

COOKIE_NAME = "orchestrate_session"
COOKIE_MAX_AGE_S = 30 * 86400
_COOKIE_CONTEXT = b"orchestrate serve session v1"
# The routes anyone may use: the health check (load balancers, probes) and signing in.
OPEN_PATHS = frozenset({"/healthz", "/signin"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
LOOPBACK_NAMES = frozenset({"localhost", "localhost.", "ip6-localhost"})


def session_cookie(token: str) -> str:
    """The session cookie's value for a token: an HMAC keyed by the token, so the cookie proves the signer
    knew the token without carrying it."""
    return hmac.new(token.encode(), _COOKIE_CONTEXT, hashlib.sha256).hexdigest()


def same_secret(given: str, expected: str) -> bool:
    """Constant-time equality of two secrets (any text: compared as UTF-8 bytes)."""
    return hmac.compare_digest(given.encode(), expected.encode())


def bearer_of(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header; None for no header or another scheme."""
    if not authorization:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return value.strip()


def is_loopback_host(host: str) -> bool:
    """A loopback name or address (127.0.0.0/8, ::1, localhost), with or without brackets."""
    name = host.strip().strip("[]").lower()
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def host_name(host_header: str) -> str:
    """The host part of a `Host` header (`[::1]:8700` → `::1`, `example.org:443` → `example.org`)."""
    value = host_header.strip()
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def same_origin(origin: str | None, host_header: str | None) -> bool:
    """Whether an `Origin` header names the host the request was sent to (its `Host`, as the browser wrote
    it: host and port). A missing, opaque (`null`) or malformed Origin is not the same origin. The scheme is
    not compared: behind a TLS proxy the browser's origin is https while this server sees http."""
    if not origin or not host_header or origin == "null":
        return False
    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/"):
        return False
    return parts.netloc.lower() == host_header.strip().lower()


class Verdict(StrEnum):
    ALLOW = "allow"
    UNAUTHORIZED = "unauthorized"  # 401: no credentials, or wrong ones
    FORBIDDEN = "forbidden"  # 403: right credentials, but a cross-site request (or a foreign Host without auth)


@dataclass(frozen=True)
class Gate:
    """The rules above for one server: its token, or None when it runs without auth."""

    token: str | None

    @property
    def cookie_value(self) -> str | None:
        return session_cookie(self.token) if self.token else None

    def check(
        self,
        method: str,
        path: str,
        *,
        authorization: str | None,
        cookie: str | None,
        origin: str | None,
        host: str | None,
    ) -> Verdict:
        """The verdict on one request from its method, path and the headers that matter."""
        changes = method.upper() not in SAFE_METHODS
        if self.token is None:
            if not is_loopback_host(host_name(host or "")):
                return Verdict.FORBIDDEN
            # Without auth a foreign Origin (a page on another site) is refused; a client that sends none
            # (curl, scripts) is let through.
            if changes and origin is not None and not same_origin(origin, host):
                return Verdict.FORBIDDEN
            return Verdict.ALLOW
        if path in OPEN_PATHS:
            return Verdict.ALLOW
        bearer = bearer_of(authorization)
        if bearer is not None:
            return Verdict.ALLOW if same_secret(bearer, self.token) else Verdict.UNAUTHORIZED
        expected = self.cookie_value
        if cookie is None or expected is None or not same_secret(cookie, expected):
            return Verdict.UNAUTHORIZED
        if changes and not same_origin(origin, host):
            return Verdict.FORBIDDEN
        return Verdict.ALLOW

    def signs_in(self, given: str) -> bool:
        """Whether a token typed into the sign-in form is the right one."""
        return self.token is not None and same_secret(given, self.token)
