"""The registry's HTTP API (distribution spec v2): the reads and writes buildtool makes.

Answers "which digest does this tag point at?" and "how big is this image?"
without the engine, so a plan can be made, and a push checked, from the
registry alone. Its writes are small: a manifest copied under another tag
(a checked image's content tag, an extra tag), the blob mounts that copy
needs across repositories, and the deletion of a staging manifest. Layers are
uploaded by skopeo or the engine (see push/__init__.py), never here.

The registry*.py modules are the only ones that call a registry: this one says what is asked;
registry_auth.py carries the credentials and bearer tokens, registry_transport.py the requests under the retry
policy (registry_retry.py), registry_tls.py what TLS trusts.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from urllib3.util.retry import Retry

from ..errors import RegistryError
from ..reference import DIGEST_RE, Reference, content_digest
from .registry_auth import AuthSession
from .registry_retry import retry_policy
from .registry_tls import ENGINE_CERTS

MANIFEST_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
_INDEX_TYPES = MANIFEST_TYPES[:2]
MAX_CONFIG_BYTES = 4 * 1024 * 1024  # an image config is a few KB; a manifest declaring more is not read


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
        self.http = AuthSession(timeout, retry or retry_policy(), certs)

    def close(self) -> None:
        self.http.close()

    # -- reads -------------------------------------------------------------------------------------------------

    def digest(self, ref: Reference) -> str | None:
        """Digest the registry serves for `ref` (tag or digest), or None if it holds no such manifest."""
        target = ref.digest or ref.tag or "latest"
        url = f"{self.http.base_url(ref)}/manifests/{target}"
        response = self.http.request("HEAD", url, ref, {"Accept": ", ".join(MANIFEST_TYPES)})
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise self.http.refused(response, ref, "the manifest")
        digest = response.headers.get("Docker-Content-Digest")
        if not digest:
            raise RegistryError(f"registry sent no Docker-Content-Digest header for {ref}")
        return digest

    def raw_manifest(self, ref: Reference) -> Manifest:
        """The manifest of `ref` (tag or digest) as stored, with the digest it must hash to."""
        target = ref.digest or ref.tag or "latest"
        response = self.http.request(
            "GET", f"{self.http.base_url(ref)}/manifests/{target}", ref, {"Accept": ", ".join(MANIFEST_TYPES)}
        )
        if response.status_code != 200:
            raise self.http.refused(response, ref, "the manifest")
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
        response = self.http.request("GET", f"{self.http.base_url(ref)}/blobs/{digest}", ref, {})
        if response.status_code != 200:
            raise self.http.refused(response, ref, f"the config blob {digest}")
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
        response = self.http.request("GET", f"{self.http.base_url(ref)}/blobs/{digest}", ref, {})
        if response.status_code != 200:
            raise self.http.refused(response, ref, f"config blob {digest}")
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
        head = self.http.request("HEAD", f"{self.http.base_url(ref)}/blobs/{digest}", ref, {})
        if head.status_code == 200:
            return
        query = urllib.parse.urlencode({"mount": digest, "from": source.path})
        response = self.http.request(
            "POST", f"{self.http.base_url(ref)}/blobs/uploads/?{query}", ref, {"Content-Length": "0"}
        )
        if response.status_code == 201:
            return
        if response.status_code == 202:  # declined: the registry opened an upload instead; close it
            location = response.headers.get("Location")
            if location:
                self.http.request("DELETE", urllib.parse.urljoin(response.url, location), ref, {})
            raise RegistryError(
                f"registry {ref.api_host} declined to mount blob {digest} from {source.repository} "
                f"into {ref.repository}; it must allow cross-repository mounts"
            )
        raise self.http.refused(response, ref, f"mounting blob {digest}")

    def put_manifest(self, ref: Reference, manifest: Manifest) -> None:
        """Store `manifest` under `ref`'s tag; RegistryError unless the registry stores it under the same digest."""
        if not ref.tag:
            raise RegistryError(f"{ref}: a manifest is stored under a tag")
        response = self.http.request(
            "PUT",
            f"{self.http.base_url(ref)}/manifests/{ref.tag}",
            ref,
            {"Content-Type": manifest.media_type},
            body=manifest.body,
        )
        if response.status_code not in (200, 201):
            raise self.http.refused(response, ref, "storing the manifest")
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
        response = self.http.request("DELETE", f"{self.http.base_url(ref)}/manifests/{ref.digest}", ref, {})
        if response.status_code not in (200, 202, 404):
            raise self.http.refused(response, ref, "deleting the manifest")
