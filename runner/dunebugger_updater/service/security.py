"""Who may talk to the service: the Origin and token rules, as pure functions.

- A WebSocket handshake whose `Origin` header is present and is not the service's own
  origin (`http://HOST:PORT`; for a loopback service also `localhost`, `127.0.0.1`,
  `[::1]`) is refused with HTTP 403, on loopback too: otherwise any web page the
  operator visits could open `ws://127.0.0.1:PORT/ws` and start updates.
- A service bound to loopback (127.0.0.0/8, ::1, `localhost`) accepts clients without a
  token. Bound to any other address, every client must present the token, as
  `Authorization: Bearer <token>` or as its first message
  `{"subject": "auth", "body": {"token": "..."}}`; binding there without a configured
  `serveToken` is a configuration error.

The decision uses the address the service is bound to, not the address a client came
in on: a service opened to the network demands the token from everyone, which is the
rule an operator can predict. Host names in `Origin` are compared literally and never
resolved, so DNS rebinding (evil.example resolving to the device) cannot pass.
"""

from __future__ import annotations

import hmac
from urllib.parse import urlsplit

from ..addresses import is_loopback
from ..errors import ConfigError

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
WILDCARDS = ("0.0.0.0", "::", "")


class AccessRules:
    def __init__(self, host: str, port: int, token: str | None, *, loopback: bool | None = None) -> None:
        """`loopback` overrides what `host` implies (tests use it to exercise the
        token rule on a loopback socket)."""
        self.host = host.strip().strip("[]").lower()
        self.port = port
        self._token = token
        self.loopback = is_loopback(host) if loopback is None else loopback
        if not self.loopback and not token:
            raise ConfigError(
                f"serveHost {host!r} is not a loopback address: set serveToken so that clients must authenticate "
                "(or bind 127.0.0.1)"
            )

    @property
    def token_required(self) -> bool:
        return not self.loopback

    def own_hosts(self, local_ip: str | None = None) -> set[str]:
        """Host parts of an Origin that is this service's own."""
        hosts = set()
        if self.host not in WILDCARDS:
            hosts.add(self.host)
        if local_ip:
            hosts.add(local_ip.lower())
        if self.loopback or (local_ip and is_loopback(local_ip)):
            hosts.update(LOOPBACK_NAMES)
        return hosts

    def origin_allowed(self, origin: str | None, local_ip: str | None = None) -> bool:
        """No Origin (not a browser) is fine here; a present one must be our own."""
        if origin is None:
            return True
        try:
            parts = urlsplit(origin.strip())
            port = parts.port or (80 if parts.scheme == "http" else None)
        except ValueError:
            return False
        if parts.scheme != "http" or parts.path not in ("", "/") or port != self.port:
            return False
        return (parts.hostname or "") in self.own_hosts(local_ip)

    def token_matches(self, presented: str | None) -> bool:
        if not self._token or not isinstance(presented, str):
            return False
        # surrogatepass: JSON can carry unpaired surrogates ("\ud800"), which strict
        # UTF-8 cannot encode; they must make a wrong token, not a crash.
        return hmac.compare_digest(
            presented.encode("utf-8", "surrogatepass"), self._token.encode("utf-8", "surrogatepass")
        )

    def bearer_matches(self, authorization: str | None) -> bool:
        if not authorization:
            return False
        scheme, _, value = authorization.strip().partition(" ")
        return scheme.lower() == "bearer" and self.token_matches(value.strip())
