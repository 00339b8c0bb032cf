"""The Docker engine, through the docker SDK: the only module that talks to it.

The SDK reports build and push failures inside its streams (with HTTP 200), so
every chunk is read and `error`/`errorDetail` turns into an exception here.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import re
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import docker
import requests
import urllib3
from docker import auth as docker_auth
from docker.errors import DockerException, ImageNotFound, NotFound
from docker.utils import build as docker_build

from . import reference
from .context import BuildContext
from .errors import BuildError, EngineError, PushError
from .interrupt import Token

log = logging.getLogger(__name__)

Progress = Callable[[str], None]
_STEP = re.compile(r"^Step (\d+/\d+) : (.*)$")
# What a call or a stream from the engine can raise besides an error chunk.
_TRANSPORT_ERRORS = (DockerException, requests.RequestException, urllib3.exceptions.HTTPError, OSError)
_TAIL_LINES = 25
_HEARTBEAT = 15.0  # seconds between progress lines during one long Dockerfile step


@dataclass(frozen=True)
class RunResult:
    exit_code: int
    output: str


@dataclass(frozen=True)
class Credentials:
    """What the engine's credential store (`docker login`, credential helpers included) holds for a registry."""

    username: str
    password: str
    identity_token: str | None = None

    def __repr__(self) -> str:  # never a secret in a log or a traceback
        return f"Credentials(username={self.username!r}, password=***)"


def stored_credentials(domain: str) -> Credentials | None:
    """The engine's stored credentials for registry `domain` (DOCKER_CONFIG or ~/.docker/config.json), or None.

    Read through the docker SDK, as the engine's own CLI reads them: `auths`, `credsStore` and `credHelpers`.
    """
    registry = None if domain == reference.DOCKER_HUB else domain
    try:
        found = docker_auth.resolve_authconfig(docker_auth.load_config(), registry=registry)
    except Exception as exc:  # a broken credential helper must not hide the real request
        log.debug("no credentials for %s: %s", domain, exc.__class__.__name__)
        return None
    if found and found.get("username") and found.get("password"):
        return Credentials(str(found["username"]), str(found["password"]), found.get("IdentityToken"))
    return None


def context_paths(root: Path, excludes: list[str], dockerfile: str) -> set[str]:
    """The paths below `root` that a build sends, by docker-py's own `.dockerignore` matcher (no engine call)."""
    # exclude_paths appends to the list it is given: hand it a copy.
    kept: set[str] = docker_build.exclude_paths(str(root), list(excludes), dockerfile=dockerfile)
    return kept


def context_tar(context: BuildContext) -> IO[bytes]:
    """The context as docker-py sends it (a temp file, rewound): the same files `context_paths` listed."""
    fileobj: IO[bytes] = docker_build.tar(
        str(context.root), exclude=list(context.excludes), dockerfile=(context.dockerfile, None))
    fileobj.seek(0)
    return fileobj


def _cut(response: requests.Response) -> None:
    """Stop a streamed response from another thread: shut its socket down, which wakes a blocked read."""
    try:
        sock = response.raw._fp.fp.raw._sock  # what docker-py's own attach helpers reach for
        sock.shutdown(socket.SHUT_RDWR)
    except (AttributeError, OSError):
        pass
    response.close()


def _no_progress(_: str) -> None:
    pass


def _stream_error(chunk: Mapping[str, Any]) -> str | None:
    """The failure a build, push or pull stream reports inside a chunk (with HTTP 200), or None."""
    if "error" not in chunk and "errorDetail" not in chunk:
        return None
    return str(chunk.get("errorDetail", {}).get("message") or chunk.get("error")).strip()


EMPTY_LAYER = "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef"  # an empty tar
# History entries that never make a layer: the classic builder's "#(nop)" instructions but COPY/ADD, and
# BuildKit's metadata instructions.
_METADATA = re.compile(r"#\(nop\)\s+(?!COPY|ADD)|^(?:ENV|LABEL|ARG|CMD|ENTRYPOINT|WORKDIR|USER|EXPOSE|VOLUME|"
                       r"STOPSIGNAL|HEALTHCHECK|SHELL|ONBUILD|MAINTAINER)\b")


def layer_sizes(diff_ids: list[str], history: list[Mapping[str, Any]]) -> dict[str, int] | None:
    """Diff ID -> bytes, pairing the layers with the history (oldest first), which the engine reports without
    saying which entries made a layer. Pairs the entries that may make one (not metadata), or else those with
    bytes; None when neither count matches the layers."""
    size = [int(entry.get("Size") or 0) for entry in history]
    maybe = [n for n, entry in enumerate(history) if size[n] > 0 or not _METADATA.search(str(entry.get("CreatedBy")))]
    if len(maybe) == len(diff_ids):
        return {d: size[n] for d, n in zip(diff_ids, maybe, strict=True)}
    with_bytes = [n for n in range(len(history)) if size[n] > 0]
    for layers in (diff_ids, [d for d in diff_ids if d != EMPTY_LAYER]):
        if len(with_bytes) == len(layers):
            found = dict.fromkeys(diff_ids, 0)
            found.update({d: size[n] for d, n in zip(layers, with_bytes, strict=True)})
            return found
    return None


@dataclass(frozen=True)
class LayerInfo:
    diff_ids: tuple[str, ...]
    sizes: dict[str, int] | None  # diff ID -> uncompressed bytes; None when the history cannot be matched
    repo_digests: tuple[str, ...]
    size: int


class Engine:
    """A connection to the Docker engine (DOCKER_HOST or the default socket)."""

    def __init__(self, timeout: int = 600) -> None:
        self._containerd_store: bool | None = None
        try:
            self._client = docker.from_env(version="auto", timeout=timeout)
            self._client.ping()
        except DockerException as exc:
            raise EngineError(f"no Docker engine answers ({exc.__class__.__name__}: {exc}); "
                              "start one with scripts/infra-up.sh or set DOCKER_HOST") from None

    @property
    def api(self) -> docker.APIClient:
        return self._client.api

    def close(self) -> None:
        self._client.close()

    def build(self, context: BuildContext, tag: str, build_args: Mapping[str, str], *, platform: str | None = None,
              labels: Mapping[str, str] | None = None, cache_from: list[str] | None = None,
              progress: Progress = _no_progress) -> str:
        """Build `context` as `tag`; return the image ID. BuildError names the failing step and shows the log's tail."""
        tail: collections.deque[str] = collections.deque(maxlen=_TAIL_LINES)
        current_step, image_id, started = "(before the first step)", None, time.monotonic()
        last_report = started
        try:
            stream = self.api.build(fileobj=context_tar(context), custom_context=True, dockerfile=context.dockerfile,
                                    tag=tag, buildargs=dict(build_args),
                                    platform=platform, labels=dict(labels or {}), cache_from=cache_from or None,
                                    rm=True, forcerm=True, decode=True)
            for chunk in stream:
                detail = _stream_error(chunk)
                if detail is not None:
                    log_tail = "\n".join(tail)
                    raise BuildError(f"build of {tag} failed at {current_step}: {detail}\n"
                                     f"--- last lines of the build log ---\n{log_tail}")
                text = chunk.get("stream", "")
                for line in text.splitlines():
                    line = line.rstrip()
                    if not line:
                        continue
                    tail.append(line)
                    match = _STEP.match(line)
                    now = time.monotonic()
                    if match:
                        current_step = f"step {match[1]} ({match[2]})"
                        progress(f"step {match[1]}: {match[2][:100]}  [{now - started:.0f}s]")
                        last_report = now
                    elif now - last_report >= _HEARTBEAT:
                        # A long RUN step: show that it moves, with its latest output line.
                        progress(f"  ... {line[:100]}  [{now - started:.0f}s]")
                        last_report = now
                aux = chunk.get("aux")
                if isinstance(aux, dict) and aux.get("ID"):
                    image_id = aux["ID"]
        except _TRANSPORT_ERRORS as exc:
            raise BuildError(f"build of {tag} failed at {current_step}: {exc.__class__.__name__}: {exc}") from None
        if not image_id:
            # Older engines announce the ID only in the stream: fall back to what the tag points at.
            image_id = self.image_id(tag)
        if not image_id:
            raise BuildError(f"build of {tag} ended without an image; last lines:\n" + "\n".join(tail))
        return image_id

    def image_id(self, ref: str) -> str | None:
        try:
            return str(self.api.inspect_image(ref)["Id"])
        except ImageNotFound:
            return None
        except _TRANSPORT_ERRORS as exc:
            raise EngineError(f"the engine could not inspect {ref}: {exc.__class__.__name__}: {exc}") from None

    def stores_images_in_containerd(self) -> bool:
        """Whether the engine keeps images in containerd (its image store option): then it exports compressed
        blobs and pushes them without compressing again, so buildtool leaves the push to it."""
        if self._containerd_store is None:
            try:
                status = self.api.info().get("DriverStatus") or []
            except _TRANSPORT_ERRORS as exc:
                raise EngineError(f"the engine could not describe itself: {exc.__class__.__name__}: {exc}") from None
            self._containerd_store = any(pair[:2] == ["driver-type", "io.containerd.snapshotter.v1"] for pair in status)
        return self._containerd_store

    def identity(self) -> str:
        """The engine's ID and version: what a remembered fact about this engine is keyed by."""
        try:
            info = self.api.info()
        except _TRANSPORT_ERRORS as exc:
            raise EngineError(f"the engine could not describe itself: {exc.__class__.__name__}: {exc}") from None
        return f"{info.get('ID', '')}/{info.get('ServerVersion', '')}"

    def pull(self, ref: str, *, progress: Progress = _no_progress) -> None:
        """Pull `ref` (a pinned `repo[:tag]@sha256:...` is pulled by its digest); EngineError on any error chunk."""
        parsed = reference.parse(ref)
        started = time.monotonic()
        try:
            for chunk in self.api.pull(parsed.repository, tag=parsed.digest or parsed.tag or "latest", stream=True,
                                       decode=True):
                detail = _stream_error(chunk)
                if detail is not None:
                    raise EngineError(f"pull of {ref} failed: {detail}")
                if chunk.get("status") == "Pull complete":
                    progress(f"pull: layer {chunk.get('id', '')} done  [{time.monotonic() - started:.0f}s]")
        except _TRANSPORT_ERRORS as exc:
            raise EngineError(f"pull of {ref} failed: {exc.__class__.__name__}: {exc}") from None

    def size(self, image: str) -> int:
        """Bytes of the image's layers, uncompressed (its own and its base's)."""
        try:
            return int(self.api.inspect_image(image)["Size"])
        except _TRANSPORT_ERRORS as exc:
            raise EngineError(f"the engine could not inspect {image}: {exc.__class__.__name__}: {exc}") from None

    def layers(self, image: str) -> LayerInfo:
        """The image's layers (diff IDs, in order), their sizes where the history tells them apart, and the
        registry references the engine pushed or pulled it under (it keeps their layers' digests there)."""
        try:
            inspected = self.api.inspect_image(image)
            history = self.api.history(image)
        except _TRANSPORT_ERRORS as exc:
            raise EngineError(f"the engine could not inspect {image}: {exc.__class__.__name__}: {exc}") from None
        diff_ids = [str(d) for d in (inspected.get("RootFS") or {}).get("Layers") or []]
        return LayerInfo(tuple(diff_ids), layer_sizes(diff_ids, list(reversed(history))),
                         tuple(str(r) for r in inspected.get("RepoDigests") or []), int(inspected.get("Size") or 0))

    def tag(self, image: str, repository: str, tag: str) -> None:
        try:
            self.api.tag(image, repository, tag)
        except _TRANSPORT_ERRORS as exc:
            raise EngineError(f"the engine could not tag {image} as {repository}:{tag}: "
                              f"{exc.__class__.__name__}: {exc}") from None

    def untag(self, ref: str) -> None:
        """Remove the tag `ref` (never the image's layers while another tag or a container holds them)."""
        try:
            self.api.remove_image(ref, noprune=False)
        except NotFound:
            pass
        except _TRANSPORT_ERRORS as exc:
            log.warning("could not remove the tag %s from the engine: %s", ref, exc)

    def push(self, repository: str, tag: str, *, token: Token, progress: Progress = _no_progress) -> str:
        """Push `repository:tag`; return the manifest digest the registry reported. PushError on any error chunk.

        A cancel of `token` cuts the stream: the engine stops the push when its client goes away.
        """
        digest: str | None = None
        layers_done, started = 0, time.monotonic()
        registry, _ = docker_auth.resolve_repository_name(repository)
        headers = {}
        header = docker_auth.get_config_header(self.api, registry)
        if header:
            headers["X-Registry-Auth"] = header
        url = self.api._url("/images/{0}/push", repository)
        try:
            response = self.api._post_json(url, None, headers=headers, stream=True, params={"tag": tag})
            with token.stopping(lambda: _cut(response)):
                self.api._raise_for_status(response)
                for chunk in self.api._stream_helper(response, decode=True):
                    detail = _stream_error(chunk)
                    if detail is not None:
                        raise PushError(f"push of {repository}:{tag} failed: {detail}; "
                                        "is the registry running and are you logged in (docker login)?")
                    status = chunk.get("status", "")
                    if status in ("Pushed", "Layer already exists") or status.startswith("Mounted from"):
                        layers_done += 1
                        progress(f"push: {layers_done} layer(s) done ({status.lower()} {chunk.get('id', '')})"
                                 f"  [{time.monotonic() - started:.0f}s]")
                    aux = chunk.get("aux")
                    if isinstance(aux, dict) and aux.get("Digest"):
                        digest = str(aux["Digest"])
        except _TRANSPORT_ERRORS as exc:
            token.raise_if_cancelled()
            # Includes a stream the engine cut mid-way (urllib3's IncompleteRead/ProtocolError).
            raise PushError(f"push of {repository}:{tag} failed: {exc.__class__.__name__}: {exc}") from None
        except (ValueError, AttributeError):
            # The cancel closed the response under the reading thread: http.client fails mid-chunk, not cleanly.
            token.raise_if_cancelled()
            raise
        token.raise_if_cancelled()
        if not digest:
            raise PushError(f"push of {repository}:{tag} ended without a digest from the registry")
        return digest

    def run(self, image: str, command: list[str], *, network: bool = False, network_mode: str | None = None,
            environment: Mapping[str, str] | None = None, volumes: Mapping[str, Mapping[str, str]] | None = None,
            timeout: float | None = None, labels: Mapping[str, str] | None = None,
            token: Token | None = None) -> RunResult:
        """Run `command` in a fresh container of `image` (no network unless asked); return its exit code and output.

        `network_mode` ("host", "none", a network's name) wins over `network` when given; `labels` are the
        container's, so that `docker ps --filter label=...` finds it while it runs.
        """
        networking: dict[str, Any] = ({"network_mode": network_mode} if network_mode
                                      else {"network_disabled": not network})
        try:
            container = self._client.containers.create(
                image, command, environment=dict(environment or {}), volumes=dict(volumes or {}), detach=True,
                labels=dict(labels or {}), **networking)
            try:
                if token is not None:
                    with token.stopping(lambda: container.remove(force=True)):
                        container.start()
                        result = container.wait(timeout=timeout)
                    token.raise_if_cancelled()
                else:
                    container.start()
                    result = container.wait(timeout=timeout)
                output = container.logs(stdout=True, stderr=True).decode(errors="replace")
                return RunResult(int(result.get("StatusCode", -1)), output)
            finally:
                with contextlib.suppress(NotFound):
                    container.remove(force=True)
        except _TRANSPORT_ERRORS as exc:
            if token is not None:
                token.raise_if_cancelled()
            raise EngineError(f"running a container of {image} failed: {exc.__class__.__name__}: {exc}") from None
