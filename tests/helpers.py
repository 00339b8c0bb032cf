"""Helpers shared by the test modules: a lock written for a project's tree, the exit codes of a failure, a port
that refuses connections, and a scripted HTTP server with a registry's manifest store for the registry client.

The fixtures are in the conftest.py files; the fake engine and its fake registry (for whole builds) in
tests/fake_engine.py, the local platform's in tests/platform_fixtures.py.
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import os
import socket
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from buildtool import config, interrupt
from buildtool.errors import BuildtoolError, Interrupted
from buildtool.inputs import context, plan, step_imports
from buildtool.lock import image_map

FUZZ_DEEP = os.environ.get("BUILDTOOL_FUZZ") == "deep"


def fuzz_examples(deep: int, quick: int = 100) -> int:
    """A fuzzer's max_examples: its full `deep` count under BUILDTOOL_FUZZ=deep (scripts/test.sh sets it in CI),
    at most `quick` (hypothesis's own default) in a developer's run."""
    return deep if FUZZ_DEEP else min(deep, quick)


EXTERNAL = "127.0.0.1:5000/lib/python:3.11"
PIN = EXTERNAL + "@sha256:" + "1" * 64


def write_lock(project_path: Path) -> tuple[config.Config, image_map.ImageMap]:
    """A map exactly as `build --push` would write it for the current tree (digests invented)."""
    loaded = config.load(project_path)
    contexts = {i.name: context.scan(i.context) for i in loaded.images}
    inputs = plan.compute_inputs(loaded, contexts, {EXTERNAL: "sha256:" + "1" * 64}, step_imports.for_config(loaded))
    the_plan = plan.make_plan(loaded, inputs, {EXTERNAL: PIN}, {}, None)
    images = {}
    for n, image in enumerate(the_plan.images):
        images[image.name] = image_map.LockedImage(
            f"{image.tagged}@sha256:{str(n) * 64}", image.inputs.digest, image.base_label, dict(image.inputs.items)
        )
    lock = image_map.ImageMap(
        steps={i.step: images[i.name].reference for i in the_plan.images if i.step}, images=images
    )
    image_map.write_atomic(loaded.image_map, image_map.render(lock))
    return loaded, lock


def failure_exit_codes() -> set[int]:
    """The codes a failure ends with, from buildtool/errors.py: each kind of error's own, and 128 + the number
    of each signal that stops a run (Interrupted). Not 1: that is an unexpected error, a bug."""
    codes = {128 + signum for signum in interrupt.SIGNALS}
    kinds = list(BuildtoolError.__subclasses__())
    while kinds:
        kind = kinds.pop()
        kinds += kind.__subclasses__()
        if kind is not Interrupted:
            codes.add(kind.exit_code)
    return codes


# `buildtool ARGS` in a child process (`python -c CLI_WITH_QUICK_RETRIES ARGS`): the same tries as `python -m
# buildtool`, with the short waits of tests/conftest.py's `_quick_retries`.
CLI_WITH_QUICK_RETRIES = """\
import functools, sys
from buildtool.push import registry
registry.retry_policy = functools.partial(registry.retry_policy, backoff=0.01)
from buildtool import cli
sys.exit(cli.main(sys.argv[1:]))
"""


@contextmanager
def refused_port() -> Iterator[int]:
    """A loopback port where a connection is refused: bound by this socket, which never listens, for the block.

    Held, not closed at once, so that no other test (a parallel worker's server) can take it meanwhile.
    """
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        yield int(holder.getsockname()[1])


# -- a registry's HTTP API, as the distribution server answers it ---------------------------------------------


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


class Server(http.server.ThreadingHTTPServer):
    """A real HTTP server on a loopback address whose answers a test scripts, recording every request."""

    daemon_threads = True

    def __init__(self, handle: Callable[[Handler], None], address: str = "127.0.0.1") -> None:
        super().__init__((address, 0), Handler)
        self.handle_request_fn = handle
        self.seen: list[tuple[str, str, str | None]] = []  # method, path, Authorization header

    @property
    def host(self) -> str:
        return f"{self.server_address[0]}:{self.server_address[1]}"


class Handler(http.server.BaseHTTPRequestHandler):
    server: Server
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms wait on the client's ACK

    def answer(self, status: int, headers: dict[str, str] | None = None, body: bytes = b"") -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.body = self.rfile.read(length) if length else b""
        self.server.seen.append((self.command, self.path, self.headers.get("Authorization")))
        self.server.handle_request_fn(self)

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = _handle

    def log_message(self, *args: object) -> None:
        pass


class Store:
    """Manifests and blob links per repository, as the distribution server keeps them."""

    def __init__(self) -> None:
        self.manifests: dict[tuple[str, str], bytes] = {}  # (repository, tag or digest) -> body
        self.blobs: dict[str, set[str]] = {}  # repository -> linked blob digests
        self.refuse_mount = False

    def __call__(self, h: Handler) -> None:
        url = urllib.parse.urlsplit(h.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        repo, _, rest = url.path.removeprefix("/v2/").partition("/blobs/")
        if rest or url.path.endswith("/blobs/uploads/"):
            if h.command == "HEAD":
                h.answer(200 if rest in self.blobs.get(repo, set()) else 404)
            elif h.command == "POST" and "mount" in query:
                if self.refuse_mount:
                    h.answer(202, {"Location": f"/v2/{repo}/blobs/uploads/opened"})
                else:
                    self.blobs.setdefault(repo, set()).add(query["mount"])
                    h.answer(201)
            else:
                h.answer(204 if h.command == "DELETE" else 404)
            return
        repo, _, ref = url.path.removeprefix("/v2/").partition("/manifests/")
        if h.command == "PUT":
            digest = "sha256:" + hashlib.sha256(h.body).hexdigest()
            self.manifests[(repo, ref)] = self.manifests[(repo, digest)] = h.body
            h.answer(201, {"Docker-Content-Digest": digest})
        elif h.command == "DELETE":
            body = self.manifests.get((repo, ref))
            for key in [k for k, v in self.manifests.items() if k[0] == repo and v == body]:
                del self.manifests[key]  # the manifest and every tag of the repository pointing at it
            h.answer(202 if body else 404)
        elif (repo, ref) in self.manifests:
            body = self.manifests[(repo, ref)]
            h.answer(
                200,
                {
                    "Docker-Content-Digest": "sha256:" + hashlib.sha256(body).hexdigest(),
                    "Content-Type": "application/vnd.docker.distribution.manifest.v2+json",
                },
                body,
            )
        else:
            h.answer(404)


MANIFEST = json.dumps(
    {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"digest": "sha256:" + "1" * 64, "size": 1},
        "layers": [{"digest": "sha256:" + "2" * 64, "size": 2}],
    },
    indent=3,
).encode()
MANIFEST_DIGEST = "sha256:" + hashlib.sha256(MANIFEST).hexdigest()
