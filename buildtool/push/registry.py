"""The registry's HTTP API (distribution spec v2): the only module that calls it.

Answers "which digest does this tag point at?" and "how big is this image?"
without the engine, so a plan can be made, and a push checked, from the
registry alone; and uploads blobs and manifests, so buildtool can push what
it compressed itself (see publish.py). Credentials come from the engine's
normal store (docker login).
"""

from __future__ import annotations

import ipaddress
import logging
import re
import threading
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import requests
import requests.auth
from docker import auth as docker_auth
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from ..errors import PushError, RegistryError
from ..reference import DOCKER_HUB, Reference

log = logging.getLogger(__name__)

MANIFEST_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
_INDEX_TYPES = MANIFEST_TYPES[:2]
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
_COMMIT_WAIT = 600.0  # seconds a blob upload may wait for the registry's answer after its last byte
_CHALLENGE = re.compile(r'(\w+)="([^"]*)"')


def _is_loopback(host: str) -> bool:
    """Whether a registry `host[:port]` (IPv6 in brackets) is on this machine: spoken to over plain HTTP."""
    name = urllib.parse.urlsplit(f"//{host}").hostname or ""
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class _NoAuth(requests.auth.AuthBase):
    """Send the headers as given: no credentials from ~/.netrc in place of a bearer token, or to another host."""

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        return request


_NO_AUTH = _NoAuth()


def _origin(url: urllib.parse.SplitResult) -> tuple[str, str, int | None]:
    """Scheme, host and port, with the scheme's default port filled in: what must match for credentials to go."""
    default = {"http": 80, "https": 443}.get(url.scheme)
    return url.scheme, (url.hostname or "").lower(), url.port or default


@dataclass(frozen=True)
class ImageSize:
    """Bytes the registry stores for one image: config blob plus compressed layers."""

    layers: int
    config: int

    @property
    def total(self) -> int:
        return self.layers + self.config


class Registry:
    """A client for one or more registries, sharing a connection pool and bearer tokens."""

    def __init__(self, timeout: float = 30.0) -> None:
        self.timeout = timeout
        self._session = requests.Session()
        retry = Retry(total=3, backoff_factor=0.5, status_forcelist=(502, 503, 504),
                      allowed_methods=("HEAD", "GET"), raise_on_status=False)
        for scheme in ("http://", "https://"):
            self._session.mount(scheme, HTTPAdapter(max_retries=retry, pool_maxsize=8))
        self._tokens: dict[tuple[str, str], str] = {}
        self._basic: dict[str, tuple[str, str]] = {}  # hosts that asked for basic auth: sent up front from then on
        self._lock = threading.Lock()

    def close(self) -> None:
        self._session.close()

    def _base_url(self, ref: Reference) -> str:
        scheme = "http" if _is_loopback(ref.api_host) else "https"
        return f"{scheme}://{ref.api_host}/v2/{ref.path}"

    def _credentials(self, ref: Reference) -> tuple[str, str] | None:
        registry = None if ref.domain == DOCKER_HUB else ref.domain
        try:
            found = docker_auth.resolve_authconfig(docker_auth.load_config(), registry=registry)
        except Exception as exc:  # a broken credential helper must not hide the real request
            log.debug("no credentials for %s: %s", ref.domain, exc)
            return None
        if found and found.get("username") and found.get("password"):
            return found["username"], found["password"]
        return None

    def _request(self, method: str, url: str, ref: Reference, headers: dict[str, str],
                 body: bytes | IO[bytes] | None = None,
                 timeout: float | tuple[float, float] | None = None) -> requests.Response:
        parts, home = urllib.parse.urlsplit(url), urllib.parse.urlsplit(self._base_url(ref))
        try:
            foreign = _origin(parts) != _origin(home)
        except ValueError as exc:  # a port out of range
            raise RegistryError(f"registry {ref.api_host}: cannot send {method} to {url}: {exc}") from None
        if foreign:
            # An upload Location elsewhere (a storage front end, say): it gets no credential, and never plain HTTP.
            if home.scheme == "https" and parts.scheme != "https":
                raise RegistryError(f"registry {ref.api_host} sent {method} for {ref} to {parts.scheme}://{parts.netloc}, "
                                    "which is not HTTPS; refused")
            return self._plain_request(method, url, ref, headers, body, timeout)
        with self._lock:
            token = self._tokens.get((ref.api_host, ref.path))
            basic = self._basic.get(ref.api_host)
        auth_headers = {"Authorization": f"Bearer {token}"} if token else {}
        try:
            response = self._session.request(method, url, headers={**headers, **auth_headers}, data=body,
                                             auth=basic if basic and not token else _NO_AUTH,
                                             timeout=timeout or self.timeout)
            if response.status_code == 401:
                response = self._answer_challenge(method, url, ref, headers, response, body, timeout or self.timeout)
        except requests.RequestException as exc:
            raise RegistryError(f"registry {ref.api_host} unreachable for {ref}: {exc.__class__.__name__}: {exc}; "
                                "is it running (scripts/infra-up.sh) and is the name right?") from None
        return response

    def _plain_request(self, method: str, url: str, ref: Reference, headers: dict[str, str],
                       body: bytes | IO[bytes] | None, timeout: float | tuple[float, float] | None) -> requests.Response:
        try:
            return self._session.request(method, url, headers=headers, data=body, auth=_NO_AUTH,
                                         timeout=timeout or self.timeout)
        except requests.RequestException as exc:
            raise RegistryError(f"{urllib.parse.urlsplit(url).netloc} unreachable for {ref}: "
                                f"{exc.__class__.__name__}: {exc}") from None

    def _answer_challenge(self, method: str, url: str, ref: Reference, headers: dict[str, str],
                          response: requests.Response, body: bytes | IO[bytes] | None,
                          timeout: float | tuple[float, float]) -> requests.Response:
        if hasattr(body, "seek"):
            body.seek(0)  # a file body was (partly) sent with the refused request: send it whole again
        challenge = response.headers.get("WWW-Authenticate", "")
        scheme = challenge.split(" ", 1)[0].lower()
        creds = self._credentials(ref)
        if scheme == "basic":
            if not creds:
                return response
            with self._lock:
                self._basic[ref.api_host] = creds
            return self._session.request(method, url, headers=headers, auth=creds, data=body, timeout=timeout)
        if scheme != "bearer":
            return response
        params = dict(_CHALLENGE.findall(challenge))
        realm = params.pop("realm", None)
        if not realm:
            return response
        if url.startswith("https://") and not realm.startswith("https://"):
            raise RegistryError(f"registry {ref.api_host} asks for credentials at {realm}, which is not HTTPS; refused")
        params.setdefault("scope", f"repository:{ref.path}:{'pull' if method in ('GET', 'HEAD') else 'pull,push'}")
        token_response = self._session.get(realm, params=params, auth=creds, timeout=self.timeout)
        if token_response.status_code != 200:
            return response
        answer = token_response.json()
        token = answer.get("token") or answer.get("access_token")
        if not token:
            return response
        with self._lock:
            self._tokens[(ref.api_host, ref.path)] = token
        return self._session.request(method, url, headers={**headers, "Authorization": f"Bearer {token}"},
                                     data=body, auth=_NO_AUTH, timeout=timeout)

    def digest(self, ref: Reference) -> str | None:
        """Digest the registry serves for `ref` (tag or digest), or None if it holds no such manifest."""
        target = ref.digest or ref.tag or "latest"
        url = f"{self._base_url(ref)}/manifests/{target}"
        response = self._request("HEAD", url, ref, {"Accept": ", ".join(MANIFEST_TYPES)})
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise RegistryError(f"registry answered {response.status_code} for the manifest of {ref}"
                                + ("; log in with `docker login " + ref.domain + "`" if response.status_code in (401, 403) else ""))
        digest = response.headers.get("Docker-Content-Digest")
        if not digest:
            raise RegistryError(f"registry sent no Docker-Content-Digest header for {ref}")
        return digest

    def manifest(self, ref: Reference) -> dict[str, Any]:
        target = ref.digest or ref.tag or "latest"
        response = self._request("GET", f"{self._base_url(ref)}/manifests/{target}", ref,
                                 {"Accept": ", ".join(MANIFEST_TYPES)})
        if response.status_code != 200:
            raise RegistryError(f"registry answered {response.status_code} for the manifest of {ref}")
        try:
            return response.json()
        except ValueError:
            raise RegistryError(f"registry sent a manifest for {ref} that is not JSON") from None

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

    def size(self, ref: Reference, platform: str = "linux/amd64") -> ImageSize:
        """Compressed size of `ref` for `platform` (an index is resolved to that platform's manifest)."""
        manifest = self.platform_manifest(ref, platform)
        layers = sum(int(layer.get("size", 0)) for layer in manifest.get("layers", []))
        return ImageSize(layers=layers, config=int(manifest.get("config", {}).get("size", 0)))

    # -- blobs and manifests: what a push writes ----------------------------------------------------------------

    def blob(self, ref: Reference, digest: str) -> bytes:
        """The content of blob `digest` in `ref`'s repository (used for image configs: small)."""
        response = self._request("GET", f"{self._base_url(ref)}/blobs/{digest}", ref, {})
        if response.status_code != 200:
            raise RegistryError(f"registry answered {response.status_code} for blob {digest} of {ref.repository}")
        return response.content

    def has_blob(self, ref: Reference, digest: str) -> bool:
        response = self._request("HEAD", f"{self._base_url(ref)}/blobs/{digest}", ref, {})
        if response.status_code in (200, 404):
            return response.status_code == 200
        raise PushError(f"registry answered {response.status_code} when asked for blob {digest} of {ref.repository}")

    def mount_blob(self, ref: Reference, digest: str, source_path: str) -> bool:
        """Link blob `digest` from repository `source_path` (same registry) into `ref`'s; False if the registry declined."""
        query = urllib.parse.urlencode({"mount": digest, "from": source_path})
        response = self._request("POST", f"{self._base_url(ref)}/blobs/uploads/?{query}", ref, {"Content-Length": "0"})
        if response.status_code == 201:
            return True
        if response.status_code == 202:  # declined: the registry opened an upload instead; close it
            location = response.headers.get("Location")
            if location:
                self._request("DELETE", urllib.parse.urljoin(response.url, location), ref, {})
            return False
        if response.status_code in (400, 401, 403, 404, 405):  # mounting unsupported or the source unreadable: upload
            log.debug("mount of %s from %s into %s refused: %s", digest, source_path, ref.path, response.status_code)
            return False
        raise PushError(f"push of {ref} failed: registry answered {response.status_code} when mounting "
                        f"{digest} from {source_path}: {response.text[:200]}")

    def upload_blob(self, ref: Reference, path: Path, digest: str) -> None:
        """Upload file `path` as blob `digest` into `ref`'s repository (one POST, one streamed PUT)."""
        started = self._request("POST", f"{self._base_url(ref)}/blobs/uploads/", ref, {"Content-Length": "0"})
        location = started.headers.get("Location")
        if started.status_code != 202 or not location:
            hint = "; log in with `docker login " + ref.domain + "`" if started.status_code in (401, 403) else ""
            raise PushError(f"push of {ref} failed: registry answered {started.status_code} when starting "
                            f"an upload: {started.text[:200]}{hint}")
        url = urllib.parse.urljoin(started.url, location)
        url += ("&" if "?" in url else "?") + urllib.parse.urlencode({"digest": digest})
        size = path.stat().st_size
        with path.open("rb") as body:
            # A registry may take a while to commit a large blob after the last byte: wait longer for its answer.
            finished = self._request("PUT", url, ref, {"Content-Type": "application/octet-stream",
                                                       "Content-Length": str(size)}, body=body,
                                     timeout=(self.timeout, max(self.timeout, _COMMIT_WAIT)))
        if finished.status_code != 201:
            raise PushError(f"push of {ref} failed: registry answered {finished.status_code} for blob "
                            f"{digest} ({size} bytes): {finished.text[:200]}")
        stored = finished.headers.get("Docker-Content-Digest", digest)
        if stored != digest:
            raise PushError(f"push of {ref} failed: blob {digest} was stored as {stored}")

    def put_manifest(self, ref: Reference, body: bytes, media_type: str = DOCKER_MANIFEST) -> str | None:
        """Store manifest `body` under `ref`'s tag; return the digest the registry reports (None if it says none)."""
        if not ref.tag:
            raise PushError(f"{ref}: a manifest is stored under a tag")
        response = self._request("PUT", f"{self._base_url(ref)}/manifests/{ref.tag}", ref,
                                 {"Content-Type": media_type}, body=body)
        if response.status_code not in (200, 201):
            raise PushError(f"push of {ref} failed: registry answered {response.status_code} for the manifest: "
                            f"{response.text[:200]}")
        return response.headers.get("Docker-Content-Digest")

    def add_tag(self, ref: Reference, tag: str) -> None:
        """Point `tag` at the manifest `ref` (pinned by digest) too: the manifest is copied, no layer moves."""
        if not ref.digest:
            raise RegistryError(f"{ref}: a tag is added to a digest-pinned reference only")
        base = self._base_url(ref)
        got = self._request("GET", f"{base}/manifests/{ref.digest}", ref, {"Accept": ", ".join(MANIFEST_TYPES)})
        if got.status_code != 200:
            raise RegistryError(f"registry answered {got.status_code} for the manifest of {ref}")
        media_type = got.headers.get("Content-Type", MANIFEST_TYPES[-1])
        put = self._request("PUT", f"{base}/manifests/{tag}", ref, {"Content-Type": media_type}, body=got.content)
        if put.status_code not in (200, 201):
            raise RegistryError(f"registry answered {put.status_code} when tagging {ref} as {tag}: {put.text[:200]}")
        if put.headers.get("Docker-Content-Digest", ref.digest) != ref.digest:
            raise RegistryError(f"tagging {ref} as {tag} stored another digest: {put.headers['Docker-Content-Digest']}")
