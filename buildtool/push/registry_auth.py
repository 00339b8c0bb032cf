"""Who may read a registry's credentials, and the requests that carry them: basic auth, bearer tokens.

Credentials come from the engine's store (`docker login`) and go only to the registry itself, or to its token
service when that is HTTPS or on the registry's own loopback host; never from ~/.netrc.
"""

from __future__ import annotations

import re
import threading
import urllib.parse
from pathlib import Path

import requests
import requests.auth
from urllib3.util.retry import Retry

from ..credentials import Credentials, stored_credentials
from ..errors import RegistryError
from ..reference import Reference, is_loopback
from .registry_retry import RETRY_STATUSES, tries_of
from .registry_tls import ENGINE_CERTS, CaBundles, uses_tls
from .registry_transport import Transport

_CHALLENGE = re.compile(r'(\w+)="([^"]*)"')


class _NoAuth(requests.auth.AuthBase):
    """Send the headers as given: no credentials from ~/.netrc in place of a bearer token, or to another host."""

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        return request


_NO_AUTH = _NoAuth()


def _origin(url: urllib.parse.SplitResult) -> tuple[str, str, int | None]:
    """Scheme, host and port, with the scheme's default port filled in: what must match for credentials to go."""
    default = {"http": 80, "https": 443}.get(url.scheme)
    return url.scheme, (url.hostname or "").lower(), url.port or default


def realm_may_get_credentials(realm: str, registry_url: str) -> bool:
    """A token service gets the registry's credentials over HTTPS, or over plain HTTP only on the registry's own
    loopback host (a local registry and its token service side by side). Anywhere else they could be read on the way."""
    parts, home = urllib.parse.urlsplit(realm), urllib.parse.urlsplit(registry_url)
    if parts.scheme == "https":
        return True
    host = (parts.hostname or "").lower()
    return parts.scheme == "http" and host == (home.hostname or "").lower() and is_loopback(host)


class AuthSession:
    """Requests to one or more registries, sharing a connection pool, TLS trust and bearer tokens."""

    def __init__(self, timeout: float, retry: Retry, certs: Path = ENGINE_CERTS) -> None:
        self.transport = Transport(timeout, retry)
        self.certs = certs
        self._bundles = CaBundles(certs)
        self._tokens: dict[tuple[str, str], str] = {}
        self._basic: dict[str, tuple[str, str]] = {}  # hosts that asked for basic auth: sent up front from then on
        self._lock = threading.Lock()

    def close(self) -> None:
        self.transport.close()
        self._bundles.close()

    def base_url(self, ref: Reference) -> str:
        scheme = "https" if uses_tls(ref.api_host, self.certs) else "http"
        return f"{scheme}://{ref.api_host}/v2/{ref.path}"

    def verify(self, ref: Reference) -> bool | str:
        """What TLS trusts for `ref`'s registry and its token service (see registry_tls.CaBundles)."""
        return self._bundles.verify(ref.api_host)

    def credentials(self, ref: Reference) -> Credentials | None:
        return stored_credentials(ref.domain)

    def request(
        self, method: str, url: str, ref: Reference, headers: dict[str, str], body: bytes | None = None
    ) -> requests.Response:
        """One call under the retry policy; RegistryError saying which failure, and how many tries it took."""
        return self.transport.call(method, url, ref, lambda: self._request_once(method, url, ref, headers, body))

    def _request_once(
        self, method: str, url: str, ref: Reference, headers: dict[str, str], body: bytes | None
    ) -> requests.Response:
        parts, home = urllib.parse.urlsplit(url), urllib.parse.urlsplit(self.base_url(ref))
        try:
            foreign = _origin(parts) != _origin(home)
        except ValueError as exc:  # a port out of range
            raise RegistryError(f"registry {ref.api_host}: cannot send {method} to {url}: {exc}") from None
        if foreign:  # a Location elsewhere: no credential goes there, and never plain HTTP from an HTTPS registry
            if home.scheme == "https" and parts.scheme != "https":
                raise RegistryError(
                    f"registry {ref.api_host} sent {method} for {ref} to "
                    f"{parts.scheme}://{parts.netloc}, which is not HTTPS; refused"
                )
            return self.transport.send(method, url, headers=headers, auth=_NO_AUTH, body=body, verify=self.verify(ref))
        with self._lock:
            token = self._tokens.get((ref.api_host, ref.path))
            basic = self._basic.get(ref.api_host)
        auth_headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = self.transport.send(
            method,
            url,
            headers={**headers, **auth_headers},
            auth=basic if basic and not token else _NO_AUTH,
            body=body,
            verify=self.verify(ref),
        )
        if response.status_code == 401:
            response = self._answer_challenge(method, url, ref, headers, response, body)
        return response

    def _answer_challenge(
        self,
        method: str,
        url: str,
        ref: Reference,
        headers: dict[str, str],
        response: requests.Response,
        body: bytes | None,
    ) -> requests.Response:
        challenge = response.headers.get("WWW-Authenticate", "")
        scheme = challenge.split(" ", 1)[0].lower()
        creds = self.credentials(ref)
        pair = (creds.username, creds.password) if creds else None
        if scheme == "basic":
            if not pair:
                return response
            with self._lock:
                self._basic[ref.api_host] = pair
            return self.transport.send(method, url, headers=headers, auth=pair, body=body, verify=self.verify(ref))
        if scheme != "bearer":
            return response
        token = self._bearer_token(method, url, ref, challenge, pair)
        if not token:
            return response
        with self._lock:
            self._tokens[(ref.api_host, ref.path)] = token
        return self.transport.send(
            method,
            url,
            headers={**headers, "Authorization": f"Bearer {token}"},
            auth=_NO_AUTH,
            body=body,
            verify=self.verify(ref),
        )

    def _bearer_token(
        self, method: str, url: str, ref: Reference, challenge: str, pair: tuple[str, str] | None
    ) -> str | None:
        """The token the challenge's realm hands out for this request's scopes, or None when it hands out none."""
        params = dict(_CHALLENGE.findall(challenge))
        realm = params.pop("realm", None)
        if not realm:
            return None
        if url.startswith("https://") and not realm.startswith("https://"):
            raise RegistryError(f"registry {ref.api_host} asks for credentials at {realm}, which is not HTTPS; refused")
        params.setdefault("scope", f"repository:{ref.path}:{'pull' if method in ('GET', 'HEAD') else 'pull,push'}")
        # A challenge lists several scopes space-separated (a blob mount needs the source repository's pull too);
        # the token service takes one `scope` parameter for each, as the engine sends them.
        query = [(k, v) for k, v in params.items() if k != "scope"] + [("scope", s) for s in params["scope"].split()]
        # Elsewhere over plain HTTP, the token is asked for anonymously: the credentials stay here.
        auth = pair if pair and realm_may_get_credentials(realm, url) else _NO_AUTH
        token_response = self.transport.send(
            "GET", realm, headers={}, auth=auth, body=None, params=query, verify=self.verify(ref)
        )
        if token_response.status_code != 200:
            return None
        try:
            answer = token_response.json()
        except ValueError:
            return None
        token = answer.get("token") or answer.get("access_token") if isinstance(answer, dict) else None
        return str(token) if token else None

    def refused(self, response: requests.Response, ref: Reference, what: str) -> RegistryError:
        """The error for an answer that is not the expected one: 401 with and without credentials told apart."""
        status = response.status_code
        if status == 401:
            if self.credentials(ref) is None:
                return RegistryError(
                    f"registry {ref.api_host} requires credentials for {what} of {ref}, and none are "
                    f"stored for it: run `docker login {ref.domain}`"
                )
            return RegistryError(
                f"registry {ref.api_host} refused the stored credentials for {what} of {ref} (401): "
                f"they are wrong or expired; run `docker login {ref.domain}` again"
            )
        if status == 403:
            return RegistryError(
                f"registry {ref.api_host} denied {what} of {ref} (403): the stored account lacks the permission"
            )
        detail = response.text[:200].strip() if response.request.method != "HEAD" else ""
        # Retried under the policy: the last answer is the one quoted.
        tries = f" (tried {tries_of(response)} time(s))" if status in RETRY_STATUSES else ""
        return RegistryError(
            f"registry {ref.api_host} answered {status} for {what} of {ref}{tries}" + (f": {detail}" if detail else "")
        )
