"""Where the Docker engine is, resolved as the docker CLI resolves it (no connection made)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
from docker.context import ContextAPI
from docker.errors import DockerException

from ..errors import EngineError


@dataclass(frozen=True)
class Endpoint:
    """Where the engine is, resolved as the docker CLI resolves it: DOCKER_HOST (with DOCKER_TLS_VERIFY and
    DOCKER_CERT_PATH), else the context DOCKER_CONTEXT names, else the config's current context, else the
    default socket."""

    url: str | None  # None: the default socket
    source: str  # what named it, for messages
    tls: Any = None  # docker.tls.TLSConfig, when the connection is TLS

    def skopeo_source(self) -> list[str] | None:
        """skopeo's options to read images from this engine, or None when skopeo cannot reach it.

        skopeo's docker-daemon transport reads the default socket whatever DOCKER_HOST says (skopeo 1.9):
        it is told the engine explicitly. It speaks TLS to any tcp:// host, with ca.pem, cert.pem and key.pem
        from one folder (DOCKER_CERT_PATH's layout), and no ssh://: then the engine pushes.
        """
        if self.url is None:
            return []
        if self.url.startswith("unix://"):
            return ["--src-daemon-host", self.url]
        tls = self.tls
        if not self.url.startswith("tcp://") or tls is None or not tls.verify or not tls.cert or not tls.ca_cert:
            return None
        files = [Path(tls.cert[0]), Path(tls.cert[1]), Path(tls.ca_cert)]
        folder = files[0].parent
        if [f.name for f in files] != ["cert.pem", "key.pem", "ca.pem"] or any(f.parent != folder for f in files):
            return None
        return ["--src-daemon-host", self.url, "--src-cert-dir", str(folder)]


def resolve_endpoint(environ: Mapping[str, str]) -> tuple[Endpoint, dict[str, Any]]:
    """The engine's endpoint and the docker SDK's client arguments for it (no connection made)."""
    try:
        params: dict[str, Any] = docker.utils.kwargs_from_env(environment=dict(environ))
        source = "DOCKER_HOST"
        if "base_url" not in params:
            name = environ.get("DOCKER_CONTEXT") or None
            if name is not None and name != "default" and ContextAPI.get_context(name) is None:
                raise EngineError(
                    f"DOCKER_CONTEXT names the context {name!r}, which `docker context ls` does "
                    "not list; create it or unset DOCKER_CONTEXT"
                )
            params.update(ContextAPI.kwargs_from_context(environment=dict(environ)))
            source = f"the docker context {name or ContextAPI.get_current_context().Name!r}"
    except DockerException as exc:
        raise EngineError(
            f"cannot resolve the Docker engine's address ({exc.__class__.__name__}: {exc}); "
            "check DOCKER_HOST, DOCKER_CERT_PATH and `docker context ls`"
        ) from None
    url = params.get("base_url")
    if url is None or url in ("unix:///var/run/docker.sock", "http+docker://localhost"):
        return Endpoint(None, "the default socket", params.get("tls")), params
    # docker-py writes a context's tcp:// host as https:// (or http://); the CLI and skopeo say tcp://.
    shown = re.sub(r"^https?://", "tcp://", str(url))
    return Endpoint(shown, source, params.get("tls")), params
