"""The connection to the Docker engine, and what the engine says about itself."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

import docker
from docker.errors import DockerException

from ..errors import EngineError
from .endpoint import resolve_endpoint
from .streams import TRANSPORT_ERRORS

log = logging.getLogger(__name__)


class _EngineAPI(docker.APIClient):  # type: ignore[misc]
    """docker-py's client, with the engine's own CA kept: requests lets REQUESTS_CA_BUNDLE (set on many CI
    runners) replace a session's CA bundle (psf/requests#3829), and the engine's certificate then fails."""

    def merge_environment_settings(self, url: Any, proxies: Any, stream: Any, verify: Any, cert: Any) -> Any:
        merged = super().merge_environment_settings(url, proxies, stream, verify, cert)
        if isinstance(self.verify, str):
            merged["verify"] = self.verify
        return merged


class Connection:
    """A connection to the Docker engine: DOCKER_HOST, the current docker context, or the default socket."""

    def __init__(self, timeout: int = 600, environ: Mapping[str, str] | None = None) -> None:
        self._containerd_store: bool | None = None
        self.endpoint, params = resolve_endpoint(os.environ if environ is None else environ)
        tls = self.endpoint.tls
        if self.endpoint.url and self.endpoint.url.startswith("tcp://") and (tls is None or not tls.verify):
            # The docker CLI does the same without a word; a build context may hold what must not leak.
            log.warning(
                "the engine at %s is reached without verifying its certificate (set DOCKER_TLS_VERIFY=1 "
                "and DOCKER_CERT_PATH): build contexts and images cross the network unauthenticated",
                self.endpoint.url,
            )
        try:
            # ssh:// goes through the ssh client, as the docker CLI's does (its config, agent and known_hosts).
            api = _EngineAPI(**params, version="auto", timeout=timeout, use_ssh_client=True)
            self.client = docker.DockerClient.__new__(docker.DockerClient)  # its __init__ only makes `api`
            self.client.api = api
            self.client.ping()
        except (DockerException, *TRANSPORT_ERRORS) as exc:
            raise EngineError(
                f"no Docker engine answers at {self.endpoint.url or 'the default socket'} "
                f"(from {self.endpoint.source}; {exc.__class__.__name__}: {exc}); "
                "start the Docker engine (systemctl start docker), or fix DOCKER_HOST / the docker "
                "context"
            ) from None

    @property
    def api(self) -> docker.APIClient:
        return self.client.api

    def close(self) -> None:
        self.client.close()

    def stores_images_in_containerd(self) -> bool:
        """Whether the engine keeps images in containerd (its image store option): then it exports compressed
        blobs and pushes them without compressing again, so buildtool leaves the push to it."""
        if self._containerd_store is None:
            try:
                status = self.api.info().get("DriverStatus") or []
            except TRANSPORT_ERRORS as exc:
                raise EngineError(f"the engine could not describe itself: {exc.__class__.__name__}: {exc}") from None
            self._containerd_store = any(pair[:2] == ["driver-type", "io.containerd.snapshotter.v1"] for pair in status)
        return self._containerd_store

    def identity(self) -> str:
        """The engine's ID and version: what a remembered fact about this engine is keyed by."""
        try:
            info = self.api.info()
        except TRANSPORT_ERRORS as exc:
            raise EngineError(f"the engine could not describe itself: {exc.__class__.__name__}: {exc}") from None
        return f"{info.get('ID', '')}/{info.get('ServerVersion', '')}"
