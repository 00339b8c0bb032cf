"""Image references: parsing, and the digest-pinned form the map and pipeline require.

Follows the grammar of the distribution project's `reference` package
(domain, path components, tag, digest), restricted to sha256 digests.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import urllib.parse
from dataclasses import dataclass

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN_PART = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"{_DOMAIN_PART}(?:\.{_DOMAIN_PART})*(?::[0-9]+)?"
_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
_DIGEST = r"sha256:[a-f0-9]{64}"

_REFERENCE = re.compile(
    rf"^(?:(?P<domain>{_DOMAIN})/)?"
    rf"(?P<path>{_COMPONENT}(?:/{_COMPONENT})*)"
    rf"(?::(?P<tag>{_TAG}))?"
    rf"(?:@(?P<digest>{_DIGEST}))?\Z"
)
# \Z, not $: `$` also matches before a final newline, and "ref\n" is not a reference.
_PATH = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*\Z")
TAG_RE = re.compile(rf"^{_TAG}\Z")
DIGEST_RE = re.compile(rf"^{_DIGEST}\Z")
HOLD_TAG_PREFIX = "sha256-"  # the tag that keeps a pinned manifest tagged: sha256-<64 hex>


def content_digest(data: bytes) -> str:
    """The content digest of `data`, as registries and the image map write it: `sha256:<64 hex>`."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"


@dataclass(frozen=True)
class Reference:
    """A parsed image reference; `domain` is the registry host as written (or docker.io)."""

    domain: str
    path: str
    tag: str | None = None
    digest: str | None = None

    @property
    def repository(self) -> str:
        """`domain/path`, the part a tag or digest is appended to."""
        return f"{self.domain}/{self.path}"

    @property
    def api_host(self) -> str:
        """Host that serves the registry HTTP API for this reference."""
        return DOCKER_HUB_API if self.domain == DOCKER_HUB else self.domain

    def with_digest(self, digest: str) -> Reference:
        return Reference(self.domain, self.path, self.tag, digest)

    def __str__(self) -> str:
        text = self.repository
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


def looks_like_domain(first: str) -> bool:
    """Whether the first component of a name is a registry host: it has a dot or a port, or is `localhost`.
    Anything else is a Docker Hub namespace (`library/python`)."""
    return "." in first or ":" in first or first == "localhost"


def is_loopback(host: str) -> bool:
    """Whether a registry `host[:port]` (IPv6 in brackets) is on this machine: spoken to over plain HTTP."""
    name = urllib.parse.urlsplit(f"//{host}").hostname or ""
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def parse(text: str) -> Reference:
    """Parse `text` into a Reference, applying Docker Hub's defaults; ValueError if invalid."""
    match = _REFERENCE.match(text)
    if not match:
        raise ValueError(f"not a valid image reference: {text!r}")
    domain, path = match["domain"], match["path"]
    if domain is not None and not looks_like_domain(domain):
        # "library/python" style: the first component is part of the path.
        path, domain = f"{domain}/{path}", None
        if not _PATH.match(path):
            raise ValueError(f"not a valid image reference: {text!r}")
    if domain is None:
        domain = DOCKER_HUB
        if "/" not in path:
            path = f"library/{path}"
    return Reference(domain, path, match["tag"], match["digest"])


def pinned_problem(text: object) -> str | None:
    """Why `text` is not a digest-pinned reference (`repo[:tag]@sha256:<64 hex>`), or None if it is."""
    if not isinstance(text, str):
        return f"expected a string, got {type(text).__name__}"
    if "@" not in text:
        return "not pinned by digest (expected exactly one '@sha256:<64 hex>')"
    if text.count("@") > 1:
        return "more than one '@'"
    name, digest = text.split("@")
    if not DIGEST_RE.match(digest):
        return f"digest {digest!r} is not 'sha256:' followed by 64 lowercase hex characters"
    try:
        parse(name)
    except ValueError:
        return f"name {name!r} is not a valid image name"
    return None


def hold_tag(digest: str) -> str:
    """The digest-named tag that holds the manifest `digest` in its repository, whatever its content tag serves.

    A registry's garbage collection deletes manifests no tag points at; this one always points at the pin.
    """
    return HOLD_TAG_PREFIX + digest.removeprefix("sha256:")


def is_pinned(text: object) -> bool:
    return pinned_problem(text) is None
