"""The Docker engine, through the docker SDK: the only module that talks to it.

The SDK reports build and push failures inside its streams (with HTTP 200), so
every chunk is read and `error`/`errorDetail` turns into an exception here.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import re
import socket
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

import docker
import requests
import urllib3
from docker import auth as docker_auth
from docker.context import ContextAPI
from docker.errors import DockerException, ImageNotFound, NotFound
from docker.utils import build as docker_build

from . import reference
from .errors import BuildError, EngineError, PushError
from .interrupt import Token
from .util.progress import Progress

log = logging.getLogger(__name__)

_STEP = re.compile(r"^Step (\d+/\d+) : (.*)$")
# What a call or a stream from the engine can raise besides an error chunk.
_TRANSPORT_ERRORS = (DockerException, requests.RequestException, urllib3.exceptions.HTTPError, OSError)
_TAIL_LINES = 25
_HEARTBEAT = 15.0  # seconds between progress lines during one long Dockerfile step


class BuildSources(Protocol):
    """What a build sends: inputs.context.BuildContext has these fields. (Named here, not imported: inputs/context.py
    calls this module for docker-py's `.dockerignore` matcher.)"""

    @property
    def root(self) -> Path: ...

    @property
    def dockerfile(self) -> str: ...

    @property
    def excludes(self) -> tuple[str, ...]: ...


@dataclass(frozen=True)
class ContainerResult:
    exit_code: int
    output: str
    #: The container outlived the `deadline` it was given, and was removed.
    timed_out: bool = False


@dataclass(frozen=True)
class Bind:
    """A host file or folder bind-mounted at `target` in a container (a list, so one source may be mounted twice)."""

    source: str
    target: str
    read_only: bool = False


def context_paths(root: Path, excludes: list[str], dockerfile: str) -> set[str]:
    """The paths below `root` that a build sends, by docker-py's own `.dockerignore` matcher (no engine call)."""
    # exclude_paths appends to the list it is given: hand it a copy.
    kept: set[str] = docker_build.exclude_paths(str(root), list(excludes), dockerfile=dockerfile)
    return kept


def context_tar(context: BuildSources) -> IO[bytes]:
    """The context as docker-py sends it (a temp file, rewound): the same files `context_paths` listed."""
    fileobj: IO[bytes] = docker_build.tar(
        str(context.root), exclude=list(context.excludes), dockerfile=(context.dockerfile, None)
    )
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
_METADATA = re.compile(
    r"#\(nop\)\s+(?!COPY|ADD)|^(?:ENV|LABEL|ARG|CMD|ENTRYPOINT|WORKDIR|USER|EXPOSE|VOLUME|"
    r"STOPSIGNAL|HEALTHCHECK|SHELL|ONBUILD|MAINTAINER)\b"
)


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


class _EngineAPI(docker.APIClient):  # type: ignore[misc]
    """docker-py's client, with the engine's own CA kept: requests lets REQUESTS_CA_BUNDLE (set on many CI
    runners) replace a session's CA bundle (psf/requests#3829), and the engine's certificate then fails."""

    def merge_environment_settings(self, url: Any, proxies: Any, stream: Any, verify: Any, cert: Any) -> Any:
        merged = super().merge_environment_settings(url, proxies, stream, verify, cert)
        if isinstance(self.verify, str):
            merged["verify"] = self.verify
        return merged


class Engine:
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
            self._client = docker.DockerClient.__new__(docker.DockerClient)  # its __init__ only makes `api`
            self._client.api = api
            self._client.ping()
        except (DockerException, *_TRANSPORT_ERRORS) as exc:
            raise EngineError(
                f"no Docker engine answers at {self.endpoint.url or 'the default socket'} "
                f"(from {self.endpoint.source}; {exc.__class__.__name__}: {exc}); "
                "start the Docker engine (systemctl start docker), or fix DOCKER_HOST / the docker "
                "context"
            ) from None

    @property
    def api(self) -> docker.APIClient:
        return self._client.api

    def close(self) -> None:
        self._client.close()

    def build(
        self,
        context: BuildSources,
        tag: str,
        build_args: Mapping[str, str],
        *,
        platform: str | None = None,
        labels: Mapping[str, str] | None = None,
        cache_from: list[str] | None = None,
        progress: Progress = _no_progress,
    ) -> str:
        """Build `context` as `tag`; return the image ID. BuildError names the failing step and shows the log's tail."""
        tail: collections.deque[str] = collections.deque(maxlen=_TAIL_LINES)
        current_step, image_id, started = "(before the first step)", None, time.monotonic()
        last_report = started
        try:
            stream = self.api.build(
                fileobj=context_tar(context),
                custom_context=True,
                dockerfile=context.dockerfile,
                tag=tag,
                buildargs=dict(build_args),
                platform=platform,
                labels=dict(labels or {}),
                cache_from=cache_from or None,
                rm=True,
                forcerm=True,
                decode=True,
            )
            for chunk in stream:
                detail = _stream_error(chunk)
                if detail is not None:
                    log_tail = "\n".join(tail)
                    raise BuildError(
                        f"build of {tag} failed at {current_step}: {detail}\n"
                        f"--- last lines of the build log ---\n{log_tail}"
                    )
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
            for chunk in self.api.pull(
                parsed.repository, tag=parsed.digest or parsed.tag or "latest", stream=True, decode=True
            ):
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
        return LayerInfo(
            tuple(diff_ids),
            layer_sizes(diff_ids, list(reversed(history))),
            tuple(str(r) for r in inspected.get("RepoDigests") or []),
            int(inspected.get("Size") or 0),
        )

    def tag(self, image: str, repository: str, tag: str) -> None:
        try:
            self.api.tag(image, repository, tag)
        except _TRANSPORT_ERRORS as exc:
            raise EngineError(
                f"the engine could not tag {image} as {repository}:{tag}: {exc.__class__.__name__}: {exc}"
            ) from None

    def untag(self, ref: str) -> None:
        """Remove the tag `ref` (never another tag, nor an image a running container uses).

        Forced: when another build moved the image's other tag away meanwhile, `ref` is its last one and the
        engine refuses a plain removal while a container (the image's check) uses it, which left the tag.
        """
        try:
            self.api.remove_image(ref, force=True, noprune=False)
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
                        raise PushError(
                            f"push of {repository}:{tag} failed: {detail}; "
                            "is the registry running and are you logged in (docker login)?"
                        )
                    status = chunk.get("status", "")
                    if status in ("Pushed", "Layer already exists") or status.startswith("Mounted from"):
                        layers_done += 1
                        progress(
                            f"push: {layers_done} layer(s) done ({status.lower()} {chunk.get('id', '')})"
                            f"  [{time.monotonic() - started:.0f}s]"
                        )
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

    def call(
        self,
        image: str,
        command: list[str],
        *,
        network: bool = False,
        network_mode: str | None = None,
        environment: Mapping[str, str] | None = None,
        volumes: Mapping[str, Mapping[str, str]] | None = None,
        timeout: float | None = None,
        labels: Mapping[str, str] | None = None,
        token: Token | None = None,
        binds: Sequence[Bind] = (),
        deadline: float | None = None,
    ) -> ContainerResult:
        """Call `command` in a fresh container of `image` (no network unless asked); return its exit code and output.

        `network_mode` ("host", "none", a network's name, "container:ID") wins over `network` when given;
        `labels` are the container's, so that `docker ps --filter label=...` finds it while it runs. A container
        still running `deadline` seconds after its start is killed and reported `timed_out`.
        """
        networking: dict[str, Any] = (
            {"network_mode": network_mode} if network_mode else {"network_disabled": not network}
        )
        mounts = [docker.types.Mount(b.target, b.source, type="bind", read_only=b.read_only) for b in binds]
        try:
            container = self._client.containers.create(
                image,
                command,
                environment=dict(environment or {}),
                volumes=dict(volumes or {}),
                detach=True,
                labels=dict(labels or {}),
                mounts=mounts,
                **networking,
            )
            try:
                timer = None
                expired = threading.Event()
                if deadline is not None:

                    def expire() -> None:
                        expired.set()
                        with contextlib.suppress(*_TRANSPORT_ERRORS):
                            container.kill()

                    timer = threading.Timer(deadline, expire)
                try:
                    if token is not None:
                        with token.stopping(lambda: container.remove(force=True)):
                            container.start()
                            if timer is not None:
                                timer.start()
                            result = container.wait(timeout=timeout)
                        token.raise_if_cancelled()
                    else:
                        container.start()
                        if timer is not None:
                            timer.start()
                        result = container.wait(timeout=timeout)
                finally:
                    if timer is not None:
                        timer.cancel()
                output = container.logs(stdout=True, stderr=True).decode(errors="replace")
                return ContainerResult(int(result.get("StatusCode", -1)), output, expired.is_set())
            finally:
                with contextlib.suppress(NotFound):
                    container.remove(force=True)
        except _TRANSPORT_ERRORS as exc:
            if token is not None:
                token.raise_if_cancelled()
            raise EngineError(f"running a container of {image} failed: {exc.__class__.__name__}: {exc}") from None

    def start_detached(
        self,
        image: str,
        command: list[str],
        *,
        network_mode: str,
        binds: Sequence[Bind] = (),
        labels: Mapping[str, str] | None = None,
    ) -> str:
        """Start a long-lived container (removed by `remove`); return its ID."""
        mounts = [docker.types.Mount(b.target, b.source, type="bind", read_only=b.read_only) for b in binds]
        try:
            container = self._client.containers.create(
                image, command, detach=True, network_mode=network_mode, mounts=mounts, labels=dict(labels or {})
            )
            container.start()
            return str(container.id)
        except _TRANSPORT_ERRORS as exc:
            raise EngineError(f"starting a container of {image} failed: {exc.__class__.__name__}: {exc}") from None

    def logs(self, container_id: str) -> str:
        """The output of a container so far, and whether it still runs, as '<status>\n<output>'."""
        try:
            container = self._client.containers.get(container_id)
            return f"{container.status}\n" + bytes(container.logs(stdout=True, stderr=True)).decode(errors="replace")
        except _TRANSPORT_ERRORS as exc:
            raise EngineError(
                f"the engine could not read container {container_id[:12]}: {exc.__class__.__name__}: {exc}"
            ) from None

    def remove(self, container_id: str) -> None:
        """Stop and remove a container; one already gone is fine."""
        try:
            self._client.containers.get(container_id).remove(force=True)
        except NotFound:
            pass
        except _TRANSPORT_ERRORS as exc:
            log.warning("could not remove container %s: %s", container_id[:12], exc)
