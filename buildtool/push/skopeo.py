"""Pushing through skopeo: `skopeo copy docker-daemon:IMAGE docker://TARGET`.

skopeo reads the image from the engine, compresses the layers the registry
lacks on every core (pgzip), retries failed transfers, mounts blobs it has
pushed before from other repositories, and writes the manifest's digest to a
file. Its credentials come from the engine's store, written to a 0600 authfile
in a private (0700) folder of the run's folder for the one registry it pushes
to (credential helpers are resolved here, as the engine's CLI resolves them);
the next run removes a folder a killed run left.

skopeo runs in a session of its own, so a terminal's Ctrl-C reaches buildtool
alone, which then stops skopeo in order (interrupt.py: the token is set before
skopeo's exit is seen, so the exit reads as the signal, not as a failed push).
A SIGKILL of buildtool gives it no such chance: skopeo is started with a
parent-death signal (PR_SET_PDEATHSIG, SIGKILL), so it never outlives the
buildtool thread that started it and never writes a manifest nobody checks.
"""

from __future__ import annotations

import base64
import collections
import ctypes
import ctypes.util
import functools
import json
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..credentials import stored_credentials
from ..errors import PushError
from ..reference import DIGEST_RE
from ..util import processes
from . import workdir
from .job import PushJob
from .registry_tls import uses_tls

RETRY_TIMES = 3
_TAIL_LINES = 15
_HEARTBEAT = 15.0
_MILESTONES = ("Copying blob", "Copying config", "Writing manifest")
_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def find() -> str | None:
    """The skopeo executable on PATH, or None."""
    return shutil.which("skopeo")


def write_authfile(folder: Path, domain: str) -> Path:
    """A containers-auth.json (the engine's config.json format) holding only `domain`'s stored credentials."""
    auths: dict[str, dict[str, str]] = {}
    found = stored_credentials(domain)
    if found is not None:
        entry = {"auth": base64.b64encode(f"{found.username}:{found.password}".encode()).decode()}
        if found.identity_token:
            entry["identitytoken"] = found.identity_token
        auths[domain] = entry
    path = workdir.private_folder(folder / "auth") / f"auth-{uuid.uuid4().hex[:8]}.json"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump({"auths": auths}, handle)
    return path


def command(executable: str, job: PushJob, authfile: Path, digestfile: Path, source: Sequence[str] = ()) -> list[str]:
    """The skopeo command line for `job` (plain HTTP, without TLS, only to a registry on this machine that has no
    CA of its own in the engine's certs.d: skopeo reads that folder too).

    `source`: the options naming the engine it reads from (Endpoint.skopeo_source), empty for the default socket.
    """
    argv = [
        executable,
        "copy",
        "--retry-times",
        str(RETRY_TIMES),
        "--dest-compress-level",
        str(job.level),
        "--digestfile",
        str(digestfile),
        "--authfile",
        str(authfile),
        *source,
    ]
    if not uses_tls(job.staging.api_host):
        argv.append("--dest-tls-verify=false")
    return argv + [f"docker-daemon:{job.local}", f"docker://{job.staging}"]


@functools.cache
def _prctl() -> Any:
    """libc's prctl, looked up once (find_library runs ldconfig)."""
    return ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True).prctl


def _dies_with_parent() -> Callable[[], None]:
    """A preexec_fn that makes the child get SIGKILL when the thread that started it ends (buildtool killed).

    libc is looked up here, in the parent: between fork and exec the child only makes two system calls.
    """
    prctl = _prctl()
    parent = os.getpid()

    def preexec() -> None:
        if prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            os.write(2, b"prctl(PR_SET_PDEATHSIG) failed: skopeo could outlive buildtool, so it was not started\n")
            os._exit(126)  # no guarantee, no push: the push fails with this line
        if os.getppid() != parent:  # buildtool died before the signal was armed
            os._exit(126)

    return preexec


class SkopeoPusher:
    """Large new layers: skopeo compresses on every core."""

    name = "skopeo"

    def __init__(self, executable: str, source: Sequence[str] = ()) -> None:
        self.executable = executable
        self.source = list(source)

    def push(self, job: PushJob) -> str:
        authfile = write_authfile(job.workdir, job.staging.domain)
        digestfile = job.workdir / f"digest-{uuid.uuid4().hex[:8]}"
        tail: collections.deque[str] = collections.deque(maxlen=_TAIL_LINES)
        started = last = time.monotonic()
        try:
            # Its own session: a terminal's Ctrl-C reaches buildtool, which stops skopeo itself (as on SIGTERM).
            # The parent-death signal fires when this thread ends: it waits for skopeo below, so only a
            # buildtool that dies ends skopeo that way.
            argv = command(self.executable, job, authfile, digestfile, self.source)
            process = subprocess.Popen(
                argv,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                text=True,
                errors="replace",
                env={**os.environ, "TMPDIR": str(job.workdir)},
                start_new_session=True,
                preexec_fn=_dies_with_parent(),
            )
        except OSError as exc:
            raise PushError(
                f"cannot run {self.executable}: {exc}; install skopeo (apt-get install skopeo) "
                'or set push_with = "engine"'
            ) from None
        try:
            with job.token.stopping(lambda: processes.stop(process)):
                assert process.stdout is not None
                for raw in process.stdout:
                    line = raw.rstrip()
                    if not line:
                        continue
                    tail.append(line)
                    now = time.monotonic()
                    if line.startswith(_MILESTONES) or now - last > _HEARTBEAT:
                        job.progress(f"push (skopeo): {line[:100]}  [{now - started:.0f}s]")
                        last = now
                code = process.wait()
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            authfile.unlink(missing_ok=True)
        job.token.raise_if_cancelled()
        if code != 0:
            detail = " | ".join(tail) or "no output"
            raise PushError(f"skopeo exited with {code} pushing {job.local} to {job.staging}: {detail[-600:]}")
        try:
            digest = digestfile.read_text().strip()
        except OSError as exc:
            raise PushError(f"skopeo wrote no digest for {job.staging}: {exc}") from None
        finally:
            digestfile.unlink(missing_ok=True)
        if not DIGEST_RE.match(digest):
            raise PushError(f"skopeo reported {digest!r} as the digest of {job.staging}, not sha256:<64 hex>")
        return digest
