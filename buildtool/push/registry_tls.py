"""What TLS trusts for a registry: the usual CAs, plus the registry's own CA from the engine's certs.d."""

from __future__ import annotations

import shutil
import tempfile
import threading
from pathlib import Path

import requests.utils

from ..reference import is_loopback

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


class CaBundles:
    """One CA bundle file per registry host with a CA of its own (the usual CAs and its own), removed by `close`."""

    def __init__(self, certs: Path = ENGINE_CERTS) -> None:
        self.certs = certs
        self._bundles: dict[str, str] = {}  # registry host -> CA bundle file
        self._folder: str | None = None
        self._lock = threading.Lock()

    def verify(self, host: str) -> bool | str:
        """What TLS trusts for registry `host` and its token service: the usual CAs (True), or a bundle that adds
        the registry's own CA from the engine's certs.d (as the engine does, for the token service too)."""
        ca = engine_ca(host, self.certs)
        if ca is None:
            return True
        with self._lock:
            if host not in self._bundles:
                if self._folder is None:
                    self._folder = tempfile.mkdtemp(prefix="buildtool-ca-")
                bundle = Path(self._folder) / f"{len(self._bundles)}.pem"
                bundle.write_text(Path(requests.utils.DEFAULT_CA_BUNDLE_PATH).read_text() + "\n" + ca.read_text())
                self._bundles[host] = str(bundle)
            return self._bundles[host]

    def close(self) -> None:
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
