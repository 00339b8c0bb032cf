"""The registry's HTTP API (distribution spec v2): the only module that calls it.

Answers "which digest does this tag point at?" and "how big is this image?"
without the engine, so a plan can be made, and a push checked, from the
registry alone. Its writes are small: a manifest copied under another tag
(a checked image's content tag, an extra tag), the blob mounts that copy
needs across repositories, and the deletion of a staging manifest. Layers are
uploaded by skopeo or the engine (see push/__init__.py), never here.

Every call is retried a bounded number of times on a dropped connection, a
timeout or a 5xx/429 answer: urllib3's `Retry`, mounted on the session (see
`retry_policy`), plus one loop for a body cut after its status arrived, which
urllib3 cannot see. Credentials come from the engine's store
(`docker login`) and go only to the registry itself, or to its token service
when that is HTTPS or on the registry's own loopback host; never from ~/.netrc.
"""

from __future__ import annotations

import http.client
import logging
import re
import shutil
import tempfile
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import requests
import requests.adapters
import requests.auth
import requests.utils
import urllib3
from urllib3.exceptions import MaxRetryError, ProtocolError
from urllib3.util.retry import Retry

from ..credentials import Credentials, stored_credentials
from ..errors import RegistryError
from ..reference import DIGEST_RE, Reference, content_digest, is_loopback

log = logging.getLogger(__name__)

MANIFEST_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
_INDEX_TYPES = MANIFEST_TYPES[:2]
_CHALLENGE = re.compile(r'(\w+)="([^"]*)"')

# The retry policy, in numbers. The platform client (images/base/platform-client/platform_client/client.py,
# `retry_policy`) builds the same urllib3 Retry in the same shape; it ships alone in an image, so the two are
# kept alike by hand: change one, look at the other. The numbers differ where the calls do: the platform's are
# all POSTs safe to repeat, tried 5 times on any 5xx, a Retry-After waited up to 30 s inside a pipeline step.
RETRIES = 3  # tries after the first: 4 in all
BACKOFF = 0.5  # urllib3's backoff_factor: the waits between tries are 0 s, 1 s, 2 s
MAX_WAIT = 10.0  # the longest single wait, a server's Retry-After included: 3 waits, 30 s at most
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
# The idempotent calls made here. A blob-mount POST is left out: sent twice after a decline it opens two uploads.
# urllib3 still retries a connection that never opened, for any method (nothing was sent).
RETRY_METHODS = frozenset({"HEAD", "GET", "PUT", "DELETE"})
MAX_CONFIG_BYTES = 4 * 1024 * 1024  # an image config is a few KB; a manifest declaring more is not read


class RetriesSpent(MaxRetryError):
    """urllib3's MaxRetryError, with the number of times the request went out (`reason` is the last failure)."""

    def __init__(self, pool: Any, url: str | None, reason: Exception | None = None, tries: int = 1) -> None:
        super().__init__(pool, url or "", reason)
        self.tries = tries


class _Retry(Retry):
    """urllib3's Retry with every wait capped at `max_wait`, that logs each retry, and gives up with RetriesSpent
    (the tries made: its history has one entry per failed try, which urllib3's MaxRetryError does not carry)."""

    def __init__(self, *args: Any, max_wait: float = MAX_WAIT, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_wait = max_wait

    def new(self, **kw: Any) -> _Retry:
        return super().new(max_wait=self.max_wait, **kw)  # urllib3 rebuilds the next Retry from keywords

    def get_backoff_time(self) -> float:
        return min(super().get_backoff_time(), self.max_wait)

    def get_retry_after(self, response: Any) -> float | None:
        value = super().get_retry_after(response)
        return None if value is None else min(value, self.max_wait)

    def increment(
        self,
        method: str | None = None,
        url: str | None = None,
        response: Any = None,
        error: Exception | None = None,
        _pool: Any = None,
        _stacktrace: TracebackType | None = None,
    ) -> _Retry:
        tries = len(self.history) + 1
        try:
            retry = super().increment(method, url, response, error, _pool, _stacktrace)
        except MaxRetryError as exc:
            raise RetriesSpent(_pool, url, exc.reason, tries) from exc
        except Exception as exc:
            if error is None or exc is not error:
                raise
            # A read error on a method not retried (a POST) comes back as it was: give it the count too.
            raise RetriesSpent(_pool, url, error, tries) from error
        # urllib3 builds the next one with type(self) (see `new`).
        assert isinstance(retry, _Retry), "urllib3's Retry.increment returns an instance of the caller's class"
        cause = f"HTTP {response.status}" if error is None and response is not None else repr(error)
        log.debug("%s %s: %s; trying again (retries left: %s)", method, url, cause, retry.total)
        return retry


def retry_policy(retries: int = RETRIES, backoff: float = BACKOFF, max_wait: float = MAX_WAIT) -> Retry:
    """The registry client's one retry policy: dropped connections, timeouts, 429 and 5xx, `retries` times.

    Waits grow as `backoff` * 2**n seconds (urllib3 tries the first retry at once), none longer than `max_wait`,
    a server's Retry-After included. Redirects are followed by requests (GET and HEAD), not counted here.
    """
    return _Retry(
        total=retries,
        connect=retries,
        read=retries,
        status=retries,
        redirect=False,
        allowed_methods=RETRY_METHODS,
        status_forcelist=RETRY_STATUSES,
        backoff_factor=backoff,
        raise_on_status=False,  # the last answer comes back, so the error can quote it
        respect_retry_after_header=True,
        max_wait=max_wait,
    )


class _BodyCut(Exception):
    """An answer's body broke off (or came short of its Content-Length) after its status had arrived."""

    def __init__(self, tries: int) -> None:
        super().__init__()
        self.tries = tries  # the sends urllib3 made for the request that got the cut answer


ENGINE_CERTS = Path("/etc/docker/certs.d")  # where the engine reads a registry's own CA: <host:port>/ca.crt


def engine_ca(host: str, certs: Path = ENGINE_CERTS) -> Path | None:
    """The CA certificate the engine trusts for registry `host[:port]` (certs.d/<host>/ca.crt), if there is one.

    skopeo reads the same folder, so all three (engine, skopeo, this client) trust the same private CA.
    """
    if "/" in host or host in ("", ".", ".."):
        return None
    path = certs / host / "ca.crt"
    return path if path.is_file() else None


def uses_tls(host: str, certs: Path = ENGINE_CERTS) -> bool:
    """HTTPS, except to a registry on this machine that has no CA of its own in the engine's certs.d."""
    return not is_loopback(host) or engine_ca(host, certs) is not None


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


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """`exc` and everything it wraps (urllib3 and requests nest the socket error several levels down)."""
    seen: set[int] = set()
    stack: list[BaseException] = [exc]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        stack += [
            e
            for e in (current.__cause__, current.__context__, getattr(current, "reason", None))
            if isinstance(e, BaseException)
        ]
        stack += [a for a in current.args if isinstance(a, BaseException)]


def describe_transport_error(exc: requests.RequestException, host: str, timeout: float) -> str:
    """Which of the ways a connection fails this was: refused, reset mid-transfer, timed out, or else."""
    chain = list(_causes(exc))
    if any(isinstance(e, ConnectionRefusedError) for e in chain):
        return f"registry {host} refused the connection (nothing listens there): is it running and is the name right?"
    if isinstance(exc, requests.ConnectTimeout) or any(
        isinstance(e, urllib3.exceptions.ConnectTimeoutError) for e in chain
    ):
        return f"registry {host} did not accept a connection within {timeout:.0f}s: is the host reachable?"
    if isinstance(exc, requests.Timeout) or any(
        isinstance(e, (TimeoutError, urllib3.exceptions.ReadTimeoutError)) for e in chain
    ):
        return f"registry {host} stopped answering for {timeout:.0f}s (timeout): is it overloaded?"
    cut = (
        ConnectionResetError,
        BrokenPipeError,
        http.client.IncompleteRead,
        http.client.RemoteDisconnected,
        urllib3.exceptions.ProtocolError,
        requests.exceptions.ChunkedEncodingError,
    )
    if any(isinstance(e, cut) for e in chain):
        return (
            f"the connection to registry {host} was cut mid-transfer (reset or a truncated answer): "
            "a proxy or the registry dropped it"
        )
    return f"registry {host} could not be reached: {exc.__class__.__name__}: {exc}"


def _require_whole(response: requests.Response) -> None:
    """Read the whole body now. A body shorter than its Content-Length is a cut connection (urllib3 1.x hands it
    over as if complete)."""
    body = response.content
    declared = response.headers.get("Content-Length")
    if response.request.method == "HEAD" or not declared or not declared.isdigit():
        return
    if len(body) < int(declared):
        raise requests.exceptions.ChunkedEncodingError(f"truncated answer: {len(body)} of {declared} bytes")


@dataclass(frozen=True)
class ImageSize:
    """Bytes the registry stores for one image: config blob plus compressed layers."""

    layers: int
    config: int

    @property
    def total(self) -> int:
        return self.layers + self.config


@dataclass(frozen=True)
class Manifest:
    """A manifest as the registry stores it: its exact bytes (what the digest is over) and media type."""

    body: bytes
    media_type: str
    digest: str

    def blobs(self) -> list[str]:
        """Digests of the config and layers an image manifest refers to."""
        import json

        document = json.loads(self.body)
        found = [document["config"]["digest"]] if "config" in document else []
        return found + [layer["digest"] for layer in document.get("layers", []) if not layer.get("urls")]


_CONFIG_LIMIT = 1 << 20  # bytes of an image config blob read back


class Registry:
    """A client for one or more registries, sharing a connection pool and bearer tokens."""

    def __init__(self, timeout: float = 30.0, retry: Retry | None = None, certs: Path = ENGINE_CERTS) -> None:
        self.timeout = timeout
        self.retry = retry or retry_policy()
        self.certs = certs
        self._bundles: dict[str, str] = {}  # registry host -> CA bundle file: the usual CAs and its own
        self._bundle_dir: str | None = None
        self._session = requests.Session()
        self._session.trust_env = False  # no ~/.netrc; proxies from the environment are applied per request
        adapter = requests.adapters.HTTPAdapter(max_retries=self.retry)  # every send, token requests included
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        self._tokens: dict[tuple[str, str], str] = {}
        self._basic: dict[str, tuple[str, str]] = {}  # hosts that asked for basic auth: sent up front from then on
        self._lock = threading.Lock()

    def close(self) -> None:
        self._session.close()
        if self._bundle_dir is not None:
            shutil.rmtree(self._bundle_dir, ignore_errors=True)

    def _base_url(self, ref: Reference) -> str:
        scheme = "https" if uses_tls(ref.api_host, self.certs) else "http"
        return f"{scheme}://{ref.api_host}/v2/{ref.path}"

    def _verify(self, ref: Reference) -> bool | str:
        """What TLS trusts for `ref`'s registry and its token service: the usual CAs, plus the registry's own CA
        from the engine's certs.d (as the engine does, for the token service too)."""
        ca = engine_ca(ref.api_host, self.certs)
        if ca is None:
            return True
        with self._lock:
            if ref.api_host not in self._bundles:
                if self._bundle_dir is None:
                    self._bundle_dir = tempfile.mkdtemp(prefix="buildtool-ca-")
                bundle = Path(self._bundle_dir) / f"{len(self._bundles)}.pem"
                bundle.write_text(Path(requests.utils.DEFAULT_CA_BUNDLE_PATH).read_text() + "\n" + ca.read_text())
                self._bundles[ref.api_host] = str(bundle)
            return self._bundles[ref.api_host]

    def _credentials(self, ref: Reference) -> Credentials | None:
        return stored_credentials(ref.domain)

    def _send(
        self,
        method: str,
        url: str,
        *,
        headers: dict[str, str],
        auth: Any,
        body: bytes | None,
        params: list[tuple[str, str]] | None = None,
        verify: bool | str = True,
    ) -> requests.Response:
        """One request under the retry policy, its body read whole: _BodyCut if that body broke off."""
        proxies = requests.utils.get_environ_proxies(url)  # HTTPS_PROXY/NO_PROXY still apply; netrc does not
        response = self._session.request(
            method,
            url,
            headers=headers,
            data=body,
            auth=auth,
            params=params,
            proxies=proxies,
            timeout=self.timeout,
            stream=True,
            verify=verify,
            allow_redirects=method in ("GET", "HEAD"),
        )
        try:
            _require_whole(response)
        except requests.RequestException as exc:
            response.close()
            spent = response.raw.retries if isinstance(response.raw, urllib3.HTTPResponse) else None
            raise _BodyCut(len(spent.history) + 1 if spent else 1) from exc
        return response

    def _request(
        self, method: str, url: str, ref: Reference, headers: dict[str, str], body: bytes | None = None
    ) -> requests.Response:
        """One call under the retry policy; RegistryError saying which failure, and how many tries it took."""
        retry = self.retry
        tries = 0  # sends made by the attempts whose answer broke off
        while True:
            try:
                return self._request_once(method, url, ref, headers, body)
            except _BodyCut as cut:
                # The one retry outside urllib3: requests reads a body after urllib3 has handed the answer over,
                # so a body that breaks off is never seen by the mounted Retry. It counts against the same policy
                # here, as a read error (so a POST is not sent again).
                tries += cut.tries
                failure = cut.__cause__ if isinstance(cut.__cause__, requests.RequestException) else None
                try:
                    retry = retry.increment(method=method, url=url, error=ProtocolError(str(failure)))
                except MaxRetryError:
                    reason = describe_transport_error(
                        failure or requests.exceptions.ChunkedEncodingError(), ref.api_host, self.timeout
                    )
                    raise RegistryError(f"{method} {ref}: {reason} (tried {tries} time(s))") from None
                retry.sleep()
            except requests.RequestException as exc:
                spent = next((e for e in _causes(exc) if isinstance(e, RetriesSpent)), None)
                tries += spent.tries if spent else 1  # no RetriesSpent: failed before the policy was asked
                raise RegistryError(
                    f"{method} {ref}: {describe_transport_error(exc, ref.api_host, self.timeout)}"
                    f" (tried {tries} time(s))"
                ) from None

    def _request_once(
        self, method: str, url: str, ref: Reference, headers: dict[str, str], body: bytes | None
    ) -> requests.Response:
        parts, home = urllib.parse.urlsplit(url), urllib.parse.urlsplit(self._base_url(ref))
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
            return self._send(method, url, headers=headers, auth=_NO_AUTH, body=body, verify=self._verify(ref))
        with self._lock:
            token = self._tokens.get((ref.api_host, ref.path))
            basic = self._basic.get(ref.api_host)
        auth_headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = self._send(
            method,
            url,
            headers={**headers, **auth_headers},
            auth=basic if basic and not token else _NO_AUTH,
            body=body,
            verify=self._verify(ref),
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
        creds = self._credentials(ref)
        pair = (creds.username, creds.password) if creds else None
        if scheme == "basic":
            if not pair:
                return response
            with self._lock:
                self._basic[ref.api_host] = pair
            return self._send(method, url, headers=headers, auth=pair, body=body, verify=self._verify(ref))
        if scheme != "bearer":
            return response
        params = dict(_CHALLENGE.findall(challenge))
        realm = params.pop("realm", None)
        if not realm:
            return response
        if url.startswith("https://") and not realm.startswith("https://"):
            raise RegistryError(f"registry {ref.api_host} asks for credentials at {realm}, which is not HTTPS; refused")
        params.setdefault("scope", f"repository:{ref.path}:{'pull' if method in ('GET', 'HEAD') else 'pull,push'}")
        # A challenge lists several scopes space-separated (a blob mount needs the source repository's pull too);
        # the token service takes one `scope` parameter for each, as the engine sends them.
        query = [(k, v) for k, v in params.items() if k != "scope"] + [("scope", s) for s in params["scope"].split()]
        # Elsewhere over plain HTTP, the token is asked for anonymously: the credentials stay here.
        auth = pair if pair and realm_may_get_credentials(realm, url) else _NO_AUTH
        token_response = self._send(
            "GET", realm, headers={}, auth=auth, body=None, params=query, verify=self._verify(ref)
        )
        if token_response.status_code != 200:
            return response
        try:
            answer = token_response.json()
        except ValueError:
            return response
        token = answer.get("token") or answer.get("access_token") if isinstance(answer, dict) else None
        if not token:
            return response
        with self._lock:
            self._tokens[(ref.api_host, ref.path)] = token
        return self._send(
            method,
            url,
            headers={**headers, "Authorization": f"Bearer {token}"},
            auth=_NO_AUTH,
            body=body,
            verify=self._verify(ref),
        )

    def _refused(self, response: requests.Response, ref: Reference, what: str) -> RegistryError:
        """The error for an answer that is not the expected one: 401 with and without credentials told apart."""
        status = response.status_code
        if status == 401:
            if self._credentials(ref) is None:
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
        tries = ""
        if status in RETRY_STATUSES:  # retried under the policy: the last answer is the one quoted
            spent = response.raw.retries if isinstance(response.raw, urllib3.HTTPResponse) else None
            tries = f" (tried {len(spent.history) + 1 if spent else 1} time(s))"
        return RegistryError(
            f"registry {ref.api_host} answered {status} for {what} of {ref}{tries}" + (f": {detail}" if detail else "")
        )

    # -- reads -------------------------------------------------------------------------------------------------

    def digest(self, ref: Reference) -> str | None:
        """Digest the registry serves for `ref` (tag or digest), or None if it holds no such manifest."""
        target = ref.digest or ref.tag or "latest"
        url = f"{self._base_url(ref)}/manifests/{target}"
        response = self._request("HEAD", url, ref, {"Accept": ", ".join(MANIFEST_TYPES)})
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise self._refused(response, ref, "the manifest")
        digest = response.headers.get("Docker-Content-Digest")
        if not digest:
            raise RegistryError(f"registry sent no Docker-Content-Digest header for {ref}")
        return digest

    def raw_manifest(self, ref: Reference) -> Manifest:
        """The manifest of `ref` (tag or digest) as stored, with the digest it must hash to."""
        target = ref.digest or ref.tag or "latest"
        response = self._request(
            "GET", f"{self._base_url(ref)}/manifests/{target}", ref, {"Accept": ", ".join(MANIFEST_TYPES)}
        )
        if response.status_code != 200:
            raise self._refused(response, ref, "the manifest")
        body = response.content
        digest = content_digest(body)
        if ref.digest and digest != ref.digest:
            raise RegistryError(f"registry sent a manifest for {ref} that hashes to {digest}")
        return Manifest(body, response.headers.get("Content-Type", MANIFEST_TYPES[-1]).split(";")[0], digest)

    def manifest(self, ref: Reference) -> dict[str, Any]:
        import json

        raw = self.raw_manifest(ref)
        try:
            document = json.loads(raw.body)
        except ValueError:
            raise RegistryError(
                f"registry sent a manifest for {ref} that is complete but not JSON ({len(raw.body)} bytes)"
            ) from None
        if not isinstance(document, dict):
            raise RegistryError(f"registry sent a manifest for {ref} that is not a JSON object")
        return document

    def platform_manifest(self, ref: Reference, platform: str = "linux/amd64") -> dict[str, Any]:
        """The image manifest of `ref` for `platform`: an index is resolved to that platform's entry."""
        manifest = self.manifest(ref)
        if manifest.get("mediaType") in _INDEX_TYPES or "manifests" in manifest:
            os_name, arch = platform.split("/")[:2]
            for entry in manifest.get("manifests", []):
                p = entry.get("platform", {})
                if p.get("os") == os_name and p.get("architecture") == arch:
                    return self.manifest(ref.with_digest(entry["digest"]))
            raise RegistryError(f"{ref} has no manifest for {platform}")
        return manifest

    def labels(self, ref: Reference, platform: str = "linux/amd64") -> dict[str, str]:
        """The labels of the image config of `ref` for `platform` (`docker inspect`'s Config.Labels); the config
        blob is read whole and must hash to the digest its manifest names."""
        import json

        manifest = self.platform_manifest(ref, platform)
        config = manifest.get("config")
        digest = config.get("digest") if isinstance(config, dict) else None
        if not isinstance(config, dict) or not isinstance(digest, str) or not DIGEST_RE.match(digest):
            raise RegistryError(f"registry sent a manifest for {ref} that names no config blob")
        size = config.get("size")
        if not isinstance(size, int) or not 0 < size <= MAX_CONFIG_BYTES:
            raise RegistryError(
                f"the manifest of {ref} declares a config blob of {size!r} bytes; an image config "
                f"is read only up to {MAX_CONFIG_BYTES} bytes"
            )
        response = self._request("GET", f"{self._base_url(ref)}/blobs/{digest}", ref, {})
        if response.status_code != 200:
            raise self._refused(response, ref, f"the config blob {digest}")
        if len(response.content) != size or content_digest(response.content) != digest:
            raise RegistryError(f"registry sent a config blob for {ref} that does not hash to {digest}")
        try:
            labels = (json.loads(response.content).get("config") or {}).get("Labels") or {}
        except (ValueError, AttributeError):
            raise RegistryError(f"registry sent a config blob for {ref} that is not an image config") from None
        if not isinstance(labels, dict):
            raise RegistryError(f"the image config of {ref} holds labels that are not a mapping")
        return {str(k): str(v) for k, v in labels.items()}

    def size(self, ref: Reference, platform: str = "linux/amd64") -> ImageSize:
        """Compressed size of `ref` for `platform` (an index is resolved to that platform's manifest)."""
        manifest = self.platform_manifest(ref, platform)
        layers = sum(int(layer.get("size", 0)) for layer in manifest.get("layers", []))
        return ImageSize(layers=layers, config=int(manifest.get("config", {}).get("size", 0)))

    def layers(self, ref: Reference, platform: str = "linux/amd64") -> dict[str, int]:
        """Uncompressed layer digest (diff ID) -> compressed size, of each layer the registry holds for `ref`.

        Read from the image's manifest and config blob (at most 1 MB, checked against its digest)."""
        import json

        manifest = self.platform_manifest(ref, platform)
        config = manifest.get("config", {})
        digest = str(config.get("digest", ""))
        if not DIGEST_RE.match(digest) or int(config.get("size", 0)) > _CONFIG_LIMIT:
            raise RegistryError(f"{ref}: the manifest names no usable config blob ({digest[:80]!r})")
        response = self._request("GET", f"{self._base_url(ref)}/blobs/{digest}", ref, {})
        if response.status_code != 200:
            raise self._refused(response, ref, f"config blob {digest}")
        body = response.content
        if len(body) > _CONFIG_LIMIT or content_digest(body) != digest:
            raise RegistryError(f"{ref}: config blob {digest} is over 1 MB or does not hash to its digest")
        try:
            diff_ids = json.loads(body)["rootfs"]["diff_ids"]
        except (ValueError, KeyError, TypeError):
            raise RegistryError(f"{ref}: config blob {digest} holds no rootfs.diff_ids") from None
        blobs = manifest.get("layers", [])
        if not isinstance(diff_ids, list) or len(diff_ids) != len(blobs):
            raise RegistryError(f"{ref}: the config lists {len(diff_ids)} layers, the manifest {len(blobs)}")
        return {str(diff): int(blob.get("size", 0)) for diff, blob in zip(diff_ids, blobs, strict=True)}

    # -- writes: copying a manifest under another tag, and removing a staging manifest ----------------------------

    def mount_blob(self, ref: Reference, digest: str, source: Reference) -> None:
        """Link blob `digest` of `source`'s repository (same registry) into `ref`'s; no byte moves."""
        head = self._request("HEAD", f"{self._base_url(ref)}/blobs/{digest}", ref, {})
        if head.status_code == 200:
            return
        query = urllib.parse.urlencode({"mount": digest, "from": source.path})
        response = self._request("POST", f"{self._base_url(ref)}/blobs/uploads/?{query}", ref, {"Content-Length": "0"})
        if response.status_code == 201:
            return
        if response.status_code == 202:  # declined: the registry opened an upload instead; close it
            location = response.headers.get("Location")
            if location:
                self._request("DELETE", urllib.parse.urljoin(response.url, location), ref, {})
            raise RegistryError(
                f"registry {ref.api_host} declined to mount blob {digest} from {source.repository} "
                f"into {ref.repository}; it must allow cross-repository mounts"
            )
        raise self._refused(response, ref, f"mounting blob {digest}")

    def put_manifest(self, ref: Reference, manifest: Manifest) -> None:
        """Store `manifest` under `ref`'s tag; RegistryError unless the registry stores it under the same digest."""
        if not ref.tag:
            raise RegistryError(f"{ref}: a manifest is stored under a tag")
        response = self._request(
            "PUT",
            f"{self._base_url(ref)}/manifests/{ref.tag}",
            ref,
            {"Content-Type": manifest.media_type},
            body=manifest.body,
        )
        if response.status_code not in (200, 201):
            raise self._refused(response, ref, "storing the manifest")
        stored = response.headers.get("Docker-Content-Digest", manifest.digest)
        if stored != manifest.digest:
            raise RegistryError(f"tagging {ref} stored digest {stored}, not {manifest.digest}")

    def copy(self, source: Reference, target: Reference, manifest: Manifest | None = None) -> str:
        """Put the manifest `source` (pinned) under `target` (repository and tag), mounting its blobs first when the
        repositories differ. `manifest`: its content, when read already. Returns the digest, the same on both sides."""
        manifest = manifest or self.raw_manifest(source)
        if source.repository != target.repository:
            for blob in manifest.blobs():
                self.mount_blob(target, blob, source)
        self.put_manifest(target, manifest)
        return manifest.digest

    def add_tag(self, ref: Reference, tag: str) -> None:
        """Point `tag` at the manifest `ref` (pinned by digest) too: the manifest is copied, no layer moves."""
        if not ref.digest:
            raise RegistryError(f"{ref}: a tag is added to a digest-pinned reference only")
        self.copy(ref, Reference(ref.domain, ref.path, tag))

    def delete_manifest(self, ref: Reference) -> None:
        """Delete the manifest `ref` (pinned) and every tag of its repository pointing at it; absent is fine."""
        if not ref.digest:
            raise RegistryError(f"{ref}: a manifest is deleted by digest only")
        response = self._request("DELETE", f"{self._base_url(ref)}/manifests/{ref.digest}", ref, {})
        if response.status_code not in (200, 202, 404):
            raise self._refused(response, ref, "deleting the manifest")
