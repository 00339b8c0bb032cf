"""Containers on the engine: a call (start a container, wait for it, read its output) and long-lived ones."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import docker
from docker.errors import NotFound

from ..errors import EngineError
from ..interrupt import Token
from .connection import Connection
from .streams import TRANSPORT_ERRORS

log = logging.getLogger(__name__)


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


def _mounts(binds: Sequence[Bind]) -> list[Any]:
    return [docker.types.Mount(b.target, b.source, type="bind", read_only=b.read_only) for b in binds]


def _start_and_wait(container: Any, timer: threading.Timer | None, timeout: float | None) -> dict[str, Any]:
    container.start()
    if timer is not None:
        timer.start()
    result: dict[str, Any] = container.wait(timeout=timeout)
    return result


def _wait(
    container: Any, *, timeout: float | None, token: Token | None, deadline: float | None
) -> tuple[dict[str, Any], bool]:
    """Start `container` and wait for it; its wait result, and whether `deadline` expired (the container killed)."""
    timer = None
    expired = threading.Event()
    if deadline is not None:

        def expire() -> None:
            expired.set()
            with contextlib.suppress(*TRANSPORT_ERRORS):
                container.kill()

        timer = threading.Timer(deadline, expire)
    try:
        if token is not None:
            with token.stopping(lambda: container.remove(force=True)):
                result = _start_and_wait(container, timer, timeout)
            token.raise_if_cancelled()
        else:
            result = _start_and_wait(container, timer, timeout)
    finally:
        if timer is not None:
            timer.cancel()
    return result, expired.is_set()


class ContainerMethods(Connection):
    """The engine's containers: `call` and the long-lived ones (`start_detached`, `logs`, `remove`)."""

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
        mounts = _mounts(binds)
        try:
            container = self.client.containers.create(
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
                result, timed_out = _wait(container, timeout=timeout, token=token, deadline=deadline)
                output = container.logs(stdout=True, stderr=True).decode(errors="replace")
                return ContainerResult(int(result.get("StatusCode", -1)), output, timed_out)
            finally:
                with contextlib.suppress(NotFound):
                    container.remove(force=True)
        except TRANSPORT_ERRORS as exc:
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
        mounts = _mounts(binds)
        try:
            container = self.client.containers.create(
                image, command, detach=True, network_mode=network_mode, mounts=mounts, labels=dict(labels or {})
            )
            container.start()
            return str(container.id)
        except TRANSPORT_ERRORS as exc:
            raise EngineError(f"starting a container of {image} failed: {exc.__class__.__name__}: {exc}") from None

    def logs(self, container_id: str) -> str:
        """The output of a container so far, and whether it still runs, as '<status>\n<output>'."""
        try:
            container = self.client.containers.get(container_id)
            return f"{container.status}\n" + bytes(container.logs(stdout=True, stderr=True)).decode(errors="replace")
        except TRANSPORT_ERRORS as exc:
            raise EngineError(
                f"the engine could not read container {container_id[:12]}: {exc.__class__.__name__}: {exc}"
            ) from None

    def remove(self, container_id: str) -> None:
        """Stop and remove a container; one already gone is fine."""
        try:
            self.client.containers.get(container_id).remove(force=True)
        except NotFound:
            pass
        except TRANSPORT_ERRORS as exc:
            log.warning("could not remove container %s: %s", container_id[:12], exc)
