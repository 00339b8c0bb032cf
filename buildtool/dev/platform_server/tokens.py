"""Login tokens: issued for an account's secret key, valid for `ttl` seconds, checked on every other call."""

from __future__ import annotations

import hmac
import logging
import secrets
import threading
import time
from collections.abc import Mapping
from http import HTTPStatus

from .refusals import Refusal

logger = logging.getLogger(__name__)


class TokenStore:
    """The accounts and the tokens issued to them; safe to share between the worker threads."""

    def __init__(self, accounts: Mapping[str, str], ttl: float) -> None:
        self._accounts = dict(accounts)
        self.ttl = ttl
        self._tokens: dict[str, tuple[str, float]] = {}  # token -> (account, expiry on the monotonic clock)
        self._lock = threading.Lock()

    def login(self, account: str, password: str) -> str:
        """A new token for `account`, if `password` is its secret key."""
        expected = self._accounts.get(account)
        # surrogatepass: a lone surrogate in JSON ("\udcff") is a wrong password, not a crash.
        given = password.encode("utf-8", "surrogatepass")
        if expected is None or not hmac.compare_digest(expected.encode("utf-8", "surrogatepass"), given):
            logger.info("login refused for account %r", account[:64])
            raise Refusal(HTTPStatus.UNAUTHORIZED, "wrong access key or secret key")
        token = secrets.token_urlsafe(32)
        now = time.monotonic()
        with self._lock:
            for old in [t for t, (_, expiry) in self._tokens.items() if expiry <= now]:
                del self._tokens[old]
            self._tokens[token] = (account, now + self.ttl)
        logger.info("login of account %r", account)
        return token

    def account_for(self, authorization: str | None) -> str:
        """The account whose unexpired token the Authorization header carries."""
        scheme, _, token = (authorization or "").partition(" ")
        token = token.strip()
        with self._lock:
            entry = self._tokens.get(token) if scheme.lower() == "bearer" and token else None
            if entry is not None and entry[1] <= time.monotonic():
                del self._tokens[token]
                raise Refusal(HTTPStatus.UNAUTHORIZED, "the token has expired: log in again")
        if entry is None:
            raise Refusal(HTTPStatus.UNAUTHORIZED, "log in first and send 'Authorization: Bearer <token>'")
        return entry[0]
