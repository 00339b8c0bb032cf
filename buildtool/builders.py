"""What builds an image: the engine's classic builder, or BuildKit through the docker CLI. One Builder interface.

- `ClassicBuilder` is the engine's API build (engine/images.py).
- `BuildKitBuilder` runs `DOCKER_BUILDKIT=1 docker build` with a CLI that
  embeds BuildKit (Debian's 20.10 CLI does; a newer CLI needs its buildx
  plugin). It sends the very context tar the classic builder sends (the files
  the inputs digest covers), and turns each RUN marked with
  `# buildtool: cache-mount TARGET FLAG` into a RUN with a cache mount at
  TARGET, without FLAG (the flag that keeps the classic build's installer
  cache out of its layer), so downloads are kept between builds.
- `choose` picks one per build: `classic`, `buildkit`, or `auto`, which uses
  BuildKit only when a probe build through the CLI succeeds (buildkit_probe.py), and says why not.

Both produce an image in the engine, tagged and labelled alike: the push, the
import check and the map do not care which one built it.
"""

from __future__ import annotations

import abc
import collections
import io
import os
import re
import subprocess
import tarfile
import tempfile
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from .buildkit_probe import PROBE_FILE, find_cli
from .check import pip_check_cache
from .config import Config
from .engine import TAIL_LINES, Engine, context_tar
from .errors import BuildError, ConfigError
from .inputs.context import BuildContext
from .inputs.render import CACHE_MOUNT_MARK
from .interrupt import Token
from .util import processes

Progress = Callable[[str], None]
_STEP = re.compile(r"^#(\d+) \[(?:[^\]\s]+ )?(\d+)/(\d+)\] (.*)$")
_ERROR = re.compile(r"^#(\d+) ERROR: (.*)$")
_CACHE_ID = "buildtool-installer"


@dataclass(frozen=True)
class BuildRequest:
    """One image to build: the arguments of `Builder.build`, as one value handed to the builder behind it."""

    context: BuildContext
    tag: str
    build_args: Mapping[str, str]
    platform: str
    labels: Mapping[str, str]
    cache_from: list[str]
    progress: Progress
    token: Token


class Builder(abc.ABC):
    """Builds `context` into an image tagged `tag` in the engine; returns its image ID."""

    name: str

    def build(
        self,
        context: BuildContext,
        tag: str,
        build_args: Mapping[str, str],
        *,
        platform: str,
        labels: Mapping[str, str],
        cache_from: list[str],
        progress: Progress,
        token: Token,
    ) -> str:
        return self._build(BuildRequest(context, tag, build_args, platform, labels, cache_from, progress, token))

    @abc.abstractmethod
    def _build(self, request: BuildRequest) -> str: ...


class ClassicBuilder(Builder):
    name = "classic"

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def _build(self, request: BuildRequest) -> str:
        return self.engine.build(
            request.context,
            request.tag,
            request.build_args,
            platform=request.platform,
            labels=request.labels,
            cache_from=request.cache_from,
            progress=request.progress,
        )


def with_cache_mounts(dockerfile: str) -> str:
    """The Dockerfile BuildKit builds: each RUN right after a cache-mount mark gets a cache mount, and its flag
    (which kept the classic build's installer cache out of the layer) is dropped. Everything else stays."""
    out: list[str] = []
    mount: tuple[str, str] | None = None  # (target, flag) of the mark waiting for its RUN
    flag: str | None = None  # the flag to drop while inside the marked RUN
    for line in dockerfile.split("\n"):
        if flag is not None:
            if not line.lstrip().startswith("#"):  # a comment inside a RUN neither continues nor ends it
                line = _drop(line, flag)
                flag = flag if line.rstrip().endswith("\\") else None
        elif line.startswith(CACHE_MOUNT_MARK):
            parts = line[len(CACHE_MOUNT_MARK) :].split()
            mount = (parts[0], parts[1]) if len(parts) == 2 and parts[0].startswith("/") else None
        elif mount is not None and line.startswith("RUN "):
            target, drop = mount
            cache_id = _CACHE_ID + re.sub(r"[^A-Za-z0-9]+", "-", target).rstrip("-")
            line = _drop(f"RUN --mount=type=cache,id={cache_id},target={target},sharing=locked {line[4:]}", drop)
            mount = None
            flag = drop if line.rstrip().endswith("\\") else None
        elif line.strip() and not line.startswith("#"):
            mount = None  # a mark belongs to the RUN right after it
        out.append(line)
    return "\n".join(out)


def _drop(line: str, flag: str) -> str:
    return re.sub(rf" {re.escape(flag)}(?=[\s;\\]|$)", "", line)


def _context_with(context: BuildContext, dockerfile: str) -> io.BytesIO:
    """The classic build's context tar, its Dockerfile replaced by `dockerfile`.

    Written without PAX headers (whole-second times, GNU format): the CLI tells a tar from a Dockerfile on
    stdin by its first 512 bytes, and a PAX header there makes it take the tar for a Dockerfile.
    """
    source = context_tar(context)
    out = io.BytesIO()
    with (
        tarfile.open(fileobj=source, mode="r") as reading,
        tarfile.open(fileobj=out, mode="w", format=tarfile.GNU_FORMAT) as writing,
    ):
        for member in reading.getmembers():
            member.mtime = int(member.mtime)
            member.pax_headers = {}
            if member.name == context.dockerfile:
                data = dockerfile.encode()
                member.size = len(data)
                writing.addfile(member, io.BytesIO(data))
            else:
                writing.addfile(member, reading.extractfile(member) if member.isfile() else None)
    source.close()
    out.seek(0)
    return out


class BuildKitBuilder(Builder):
    name = "buildkit"

    def __init__(self, cli: str) -> None:
        self.cli = cli  # the docker CLI that embeds BuildKit

    def command(self, request: BuildRequest, iidfile: Path) -> list[str]:
        """The CLI's argv: the context (and its Dockerfile, named by `--file`) comes on stdin."""
        argv = [
            self.cli,
            "build",
            "--progress=plain",
            "--iidfile",
            str(iidfile),
            "--tag",
            request.tag,
            "--platform",
            request.platform,
            "--file",
            request.context.dockerfile,
            # Cache metadata in the image, so that a fresh runner's --cache-from of it reuses its layers.
            "--build-arg",
            "BUILDKIT_INLINE_CACHE=1",
        ]
        for name, value in sorted(request.build_args.items()):
            argv += ["--build-arg", f"{name}={value}"]
        for name, value in sorted(request.labels.items()):
            argv += ["--label", f"{name}={value}"]
        for ref in request.cache_from:
            argv += ["--cache-from", ref]
        return argv + ["-"]

    def _build(self, request: BuildRequest) -> str:
        context, tag = request.context, request.tag
        try:
            text = (context.root / context.dockerfile).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise BuildError(f"build of {tag}: cannot read {context.root / context.dockerfile}: {exc}") from None
        tar = _context_with(context, with_cache_mounts(text))
        with tempfile.TemporaryDirectory(prefix="buildtool-buildkit-") as folder:
            iidfile = Path(folder) / "iid"
            argv = self.command(request, iidfile)
            output = self._call_cli(argv, tar, request)
            if output.code != 0:
                log_tail = "\n".join(output.tail)
                raise BuildError(
                    f"build of {tag} failed at {output.failed or '(before the first step)'} (BuildKit, exit "
                    f"{output.code})\n--- last lines of the build log ---\n{log_tail}"
                )
            try:
                image_id = iidfile.read_text().strip()
            except OSError:
                image_id = ""
        if not image_id.startswith("sha256:"):
            raise BuildError(f"build of {tag} by BuildKit wrote no image ID; last lines:\n" + "\n".join(output.tail))
        return image_id

    def _call_cli(self, argv: list[str], tar: io.BytesIO, request: BuildRequest) -> _CliOutput:
        """Start the CLI, feed it the context, follow its log until it exits (or the token is cancelled)."""
        try:
            process = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env={**os.environ, "DOCKER_BUILDKIT": "1"},
                start_new_session=True,
            )
        except OSError as exc:
            raise BuildError(f'build of {request.tag}: cannot run {self.cli}: {exc}; set builder = "classic"') from None
        assert process.stdin is not None and process.stdout is not None
        feeder = threading.Thread(target=_feed, args=(process.stdin, tar), daemon=True)
        output = _CliOutput()
        with request.token.stopping(lambda: processes.stop(process)):
            feeder.start()
            for raw in process.stdout:
                output.read(raw.decode(errors="replace").rstrip(), request.progress)
            output.code = process.wait()
            feeder.join(5)
        request.token.raise_if_cancelled()
        return output


class _CliOutput:
    """What BuildKit's plain progress log said: the steps it named, the first that failed, the log's tail."""

    def __init__(self) -> None:
        self.tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        self.steps: dict[str, str] = {}
        self.failed: str | None = None
        self.code = 0

    def read(self, line: str, progress: Progress) -> None:
        if not line:
            return
        self.tail.append(line)
        step = _STEP.match(line)
        if step and step[1] not in self.steps:
            self.steps[step[1]] = f"step {step[2]}/{step[3]} ({step[4][:80]})"
            progress(f"step {step[2]}/{step[3]}: {step[4][:100]}")
        error = _ERROR.match(line)
        if error and self.failed is None:
            self.failed = self.steps.get(error[1], "a step")


class AutoBuilder(Builder):
    """`auto` with a working BuildKit: BuildKit for a Dockerfile with an installer cache to mount (a marked RUN),
    the classic builder for the others, which it builds faster here (a two-step image: 0.4 s against 0.85 s)."""

    name = "auto"

    def __init__(self, buildkit: BuildKitBuilder, classic: ClassicBuilder) -> None:
        self.buildkit, self.classic = buildkit, classic

    def for_context(self, context: BuildContext) -> Builder:
        try:
            text = (context.root / context.dockerfile).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return self.classic  # its own build reports the unreadable file
        marked = any(line.startswith(CACHE_MOUNT_MARK) for line in text.splitlines())
        return self.buildkit if marked else self.classic

    def _build(self, request: BuildRequest) -> str:
        chosen = self.for_context(request.context)
        request.progress(f"built by {'BuildKit' if chosen is self.buildkit else 'the classic builder'}")
        return chosen._build(request)


def _feed(pipe: IO[bytes], tar: io.BytesIO) -> None:
    """Send the context on the CLI's stdin (its own thread: the CLI reads it while it prints)."""
    try:
        for chunk in iter(lambda: tar.read(1 << 20), b""):
            pipe.write(chunk)
    except (BrokenPipeError, OSError):
        pass  # the CLI stopped reading: its exit code says why
    finally:
        try:
            pipe.close()
        except OSError:
            pass


def choose(config: Config, engine: Engine, wanted: str | None = None) -> tuple[Builder, str]:
    """The builder of this build and one line saying which it is and why."""
    way = wanted or config.builder
    if way == "classic":
        return ClassicBuilder(engine), "builder: classic (the engine's API)"
    cache = pip_check_cache.default_path()
    cli, reasons = find_cli(engine, None if cache is None else cache.with_name(PROBE_FILE))
    if cli is not None and way == "buildkit":
        return BuildKitBuilder(cli), f"builder: buildkit (DOCKER_BUILDKIT=1 {cli} build)"
    if cli is not None:
        return (
            AutoBuilder(BuildKitBuilder(cli), ClassicBuilder(engine)),
            f"builder: auto: buildkit (DOCKER_BUILDKIT=1 {cli} build) for Dockerfiles with an installer cache "
            "mount, classic for the others",
        )
    if way == "buildkit":
        raise ConfigError(
            f'{config.path}: builder = "buildkit" but no docker CLI builds with BuildKit here '
            f"({'; '.join(reasons)}); install Debian's docker.io (its CLI embeds BuildKit) or the "
            'buildx plugin, or set builder = "classic" or "auto"'
        )
    return ClassicBuilder(engine), f"builder: classic (BuildKit unavailable: {'; '.join(reasons)})"
