"""A fake Docker Engine API and a fake registry, real HTTP servers on 127.0.0.1, for unit tests.

Like docker-py's tests/unit/fake_api.py, the engine answers the Engine API with canned
responses; unlike it, it is a real server, so buildtool's engine module is exercised
through the real docker SDK (DOCKER_HOST=tcp://127.0.0.1:PORT), and the SDK's stream
decoding, error chunks and broken connections are the real ones.

What the real engine cannot be made to do on demand (fail a build at a chosen step,
report an error inside a push stream, cut a stream midway, report a digest the
registry does not serve) is scripted per image name.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import socket
import sys
import tarfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

API_VERSION = "1.41"
CUT = object()  # in a scripted stream: close the connection here, mid-stream
Chunk = Any  # a dict sent as one JSON line, or CUT


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def probe_output(failed: dict[str, str] | None = None, pip_code: int = 0, pip_output: str = "") -> str:
    """What buildtool's import probe prints inside an image."""
    return "IMPORT-PROBE " + json.dumps({"imports": failed or {}, "pip_check": [pip_code, pip_output]}) + "\n"


STAGING = "staging"  # the repository component an image is pushed under while it is checked (push/job.py)


def image_name(reference: str) -> str:
    """`host:port/repo/NAME:tag` (or its staging `host:port/repo/NAME/staging:tag`) -> NAME: scripts are keyed
    by the image's own name."""
    parts = reference.split("@")[0].split("/")
    names = [part.split(":")[0] for part in parts]
    if len(names) > 1 and names[-1] == STAGING:
        return names[-2]
    return names[-1]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.failures: list[BaseException] = []  # the fake's own bugs, reported when it closes
        self.connections: set[socket.socket] = set()

    def process_request(self, request: Any, client_address: Any) -> None:
        self.connections.add(request)
        super().process_request(request, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        failure = sys.exc_info()[1]
        # A client that stops reading after an error chunk is what a real engine sees too.
        if failure is not None and not isinstance(failure, (BrokenPipeError, ConnectionResetError)):
            self.failures.append(failure)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms wait on the client's ACK
    owner: Any  # set on the subclass each server makes

    def log_message(self, format: str, *args: Any) -> None:  # quiet: pytest shows what matters
        pass

    # -- plumbing -------------------------------------------------------------------------------------------

    def body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return bytes(data)
                data += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def send(
        self,
        status: int,
        payload: Any = None,
        *,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
        head: bool = False,
    ) -> None:
        data = b"" if payload is None else payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if not head:
            self.wfile.write(data)

    def stream(self, chunks: list[Chunk], delay: float = 0.0) -> None:
        """A chunked JSON stream as the engine sends for build, push and pull; CUT drops the connection."""
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for chunk in chunks:
            if chunk is CUT:
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            data = (json.dumps(chunk) + "\r\n").encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()
            time.sleep(delay)
        self.wfile.write(b"0\r\n\r\n")

    def route(self) -> tuple[str, dict[str, str]]:
        parts = urllib.parse.urlsplit(self.path)
        path = urllib.parse.unquote(parts.path)
        query = {k: v[-1] for k, v in urllib.parse.parse_qs(parts.query).items()}
        return path, query

    def do_GET(self) -> None:
        self.owner.handle(self, "GET")

    def do_HEAD(self) -> None:
        self.owner.handle(self, "HEAD")

    def do_POST(self) -> None:
        self.owner.handle(self, "POST")

    def do_PUT(self) -> None:
        self.owner.handle(self, "PUT")

    def do_DELETE(self) -> None:
        self.owner.handle(self, "DELETE")


class _Served:
    """A ThreadingHTTPServer on 127.0.0.1:<free port>, run in a daemon thread."""

    def __init__(self) -> None:
        handler = type("Handler", (_Handler,), {"owner": self})
        self._server = _Server(("127.0.0.1", 0), handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def handle(self, request: _Handler, method: str) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Stop listening and drop the open (keep-alive) connections: as an engine that went away."""
        self._server.shutdown()
        self._server.server_close()
        for connection in list(self._server.connections):
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    @property
    def failures(self) -> list[BaseException]:
        return self._server.failures


# -- the registry ---------------------------------------------------------------------------------------------


class FakeRegistry(_Served):
    """Distribution API v2: /v2/; HEAD, GET, PUT and DELETE of manifests; HEAD of blobs and their cross-repository
    mount (POST /blobs/uploads/?mount=&from=). What a push stores comes from the engine.

    As the real registry (distribution), a manifest PUT is refused while a blob it names is not in its
    repository, and a DELETE by digest removes every tag of the repository pointing at that manifest.
    `moved_after_put[path]`: a digest served for a content tag (`in-...`) of `path` once a manifest was put there
    (someone else moved the tag right after).
    """

    MEDIA_TYPE = "application/vnd.docker.distribution.manifest.v2+json"

    def __init__(self) -> None:
        super().__init__()
        self.host = f"127.0.0.1:{self.port}"
        self._manifests: dict[tuple[str, str], tuple[str, bytes]] = {}  # (repository path, tag or digest)
        self._blobs: dict[str, set[str]] = {}  # repository path -> blob digests it holds
        self._lock = threading.Lock()
        self.heads: list[str] = []  # "path:reference" of every HEAD, in order
        self.puts: list[str] = []  # "path:tag" of every manifest stored by PUT
        self.deletes: list[str] = []  # "path@digest" of every manifest DELETE that removed something
        self.mounts: list[str] = []  # "from-path -> path digest" of every blob mounted
        self.moved_after_put: dict[str, str] = {}
        self.configs: dict[str, bytes] = {}  # config blobs by digest (a test may swap one's bytes)

    def store(
        self,
        path: str,
        tag: str,
        layers: tuple[int, ...] = (1000, 2000),
        labels: dict[str, str] | None = None,
        config_size: int | None = None,
    ) -> str:
        """Hold an image manifest under `path:tag`, its config carrying `labels` and one diff ID per layer;
        return its digest.

        `config_size`: the size the manifest declares for its config (a lie, when given)."""
        config = json.dumps(
            {
                "architecture": "amd64",
                "os": "linux",
                "config": {"Labels": labels or {}},
                "comment": f"{path}:{tag}",
                "rootfs": {
                    "type": "layers",
                    "diff_ids": [sha256(f"diff {path}:{tag}:{n}".encode()) for n in range(len(layers))],
                },
            },
            sort_keys=True,
        ).encode()
        manifest = {
            "schemaVersion": 2,
            "mediaType": self.MEDIA_TYPE,
            "config": {
                "mediaType": "application/vnd.docker.container.image.v1+json",
                "size": len(config) if config_size is None else config_size,
                "digest": sha256(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                    "size": size,
                    "digest": sha256(f"layer {path}:{tag}:{n}".encode()),
                }
                for n, size in enumerate(layers)
            ],
        }
        body = json.dumps(manifest, sort_keys=True).encode()
        digest = sha256(body)
        with self._lock:
            self.configs[sha256(config)] = config
            self._manifests[(path, tag)] = (digest, body)
            self._manifests[(path, digest)] = (digest, body)
            self._blobs.setdefault(path, set()).update(self._blobs_of(body))
        return digest

    def rewrite_config(self, path: str, tag: str, digest: str, size: int) -> str:
        """Store `path:tag` again with its manifest naming another config blob; return the new digest."""
        with self._lock:
            _, body = self._manifests[(path, tag)]
        manifest = json.loads(body)
        manifest["config"].update(digest=digest, size=size)
        body = json.dumps(manifest, sort_keys=True).encode()
        new = sha256(body)
        with self._lock:
            self._manifests[(path, tag)] = (new, body)
            self._manifests[(path, new)] = (new, body)
            self._blobs.setdefault(path, set()).add(digest)
        return new

    @staticmethod
    def _blobs_of(body: bytes) -> list[str]:
        document = json.loads(body)
        return [document["config"]["digest"]] + [layer["digest"] for layer in document.get("layers", [])]

    def tags(self, path: str) -> dict[str, str]:
        """The tags `path` holds, with the digest each serves."""
        with self._lock:
            return {
                ref: found[0]
                for (repo, ref), found in self._manifests.items()
                if repo == path and not ref.startswith("sha256:")
            }

    def serve_instead(self, path: str, tag: str, digest: str) -> None:
        """Answer `path:tag` with another digest than the one stored (a tag moved by someone else)."""
        with self._lock:
            _, body = self._manifests.get((path, tag), ("", b"{}"))
            self._manifests[(path, tag)] = (digest, body)

    def forget(self, path: str, reference: str) -> None:
        """Stop serving `path:reference` (a manifest deleted, a registry wiped)."""
        with self._lock:
            self._manifests.pop((path, reference), None)

    def served(self, path: str, reference: str) -> str | None:
        with self._lock:
            found = self._manifests.get((path, reference))
        return found[0] if found else None

    @staticmethod
    def _error(request: _Handler, status: int, code: str, message: str, head: bool = False) -> None:
        request.send(status, {"errors": [{"code": code, "message": message}]}, head=head)

    def handle(self, request: _Handler, method: str) -> None:
        path, query = request.route()
        if path == "/v2/" or path == "/v2":
            request.send(200, {}, head=method == "HEAD")
            return
        repo, marker, target = path.removeprefix("/v2/").rpartition("/manifests/")
        if not marker:
            self._blob_request(request, method, path, query)
            return
        if method == "PUT":
            self._put(request, repo, target)
            return
        if method == "DELETE":
            self._delete(request, repo, target)
            return
        if method not in ("GET", "HEAD"):
            self._error(request, 405, "UNSUPPORTED", f"{method} {path}")
            return
        if method == "HEAD":
            with self._lock:
                self.heads.append(f"{repo}:{target}")
        with self._lock:
            found = self._manifests.get((repo, target))
        if found is None:
            request.send(
                404, {"errors": [{"code": "MANIFEST_UNKNOWN", "message": "manifest unknown"}]}, head=method == "HEAD"
            )
            return
        digest, body = found
        request.send(
            200, body, content_type=self.MEDIA_TYPE, head=method == "HEAD", headers={"Docker-Content-Digest": digest}
        )

    def _put(self, request: _Handler, repo: str, tag: str) -> None:
        body = request.body()
        if request.headers.get("Content-Type") != self.MEDIA_TYPE:
            self._error(request, 400, "MANIFEST_INVALID", f"media type {request.headers.get('Content-Type')}")
            return
        try:
            blobs = self._blobs_of(body)
        except (ValueError, KeyError, TypeError):
            self._error(request, 400, "MANIFEST_INVALID", "manifest invalid")
            return
        digest = sha256(body)
        with self._lock:
            missing = [blob for blob in blobs if blob not in self._blobs.get(repo, set())]
            if not missing:
                served = self.moved_after_put.get(repo, digest) if tag.startswith("in-") else digest
                self._manifests[(repo, tag)] = (served, body)
                self._manifests[(repo, digest)] = (digest, body)
                self.puts.append(f"{repo}:{tag}")
        if missing:
            self._error(request, 400, "MANIFEST_BLOB_UNKNOWN", f"blob unknown to registry: {missing[0]}")
            return
        request.send(201, headers={"Docker-Content-Digest": digest, "Location": f"/v2/{repo}/manifests/{digest}"})

    def _delete(self, request: _Handler, repo: str, digest: str) -> None:
        if not digest.startswith("sha256:"):
            self._error(request, 400, "UNSUPPORTED", "a manifest is deleted by digest")
            return
        with self._lock:
            gone = [key for key, (served, _) in self._manifests.items() if key[0] == repo and served == digest]
            gone += [(repo, digest)] if (repo, digest) in self._manifests else []
            for key in gone:
                self._manifests.pop(key, None)
            if gone:
                self.deletes.append(f"{repo}@{digest}")
        if not gone:
            self._error(request, 404, "MANIFEST_UNKNOWN", "manifest unknown")
            return
        request.send(202)

    def _blob_request(self, request: _Handler, method: str, path: str, query: dict[str, str]) -> None:
        repo, marker, digest = path.removeprefix("/v2/").rpartition("/blobs/")
        if marker and method == "GET" and digest.startswith("sha256:"):
            with self._lock:
                content = self.configs.get(digest) if digest in self._blobs.get(repo, set()) else None
            if content is None:
                self._error(request, 404, "BLOB_UNKNOWN", "blob unknown to registry")
            else:
                request.send(200, content, content_type="application/octet-stream")
            return
        if marker and method == "HEAD" and digest.startswith("sha256:"):
            with self._lock:
                held = digest in self._blobs.get(repo, set())
            request.send(200 if held else 404, headers={"Docker-Content-Digest": digest} if held else {}, head=True)
            return
        repo, marker, _ = path.removeprefix("/v2/").rpartition("/blobs/uploads")
        if marker and method == "POST":
            request.body()
            blob, source = query.get("mount", ""), query.get("from", "")
            with self._lock:
                mounted = blob in self._blobs.get(source, set())
                if mounted:
                    self._blobs.setdefault(repo, set()).add(blob)
                    self.mounts.append(f"{source} -> {repo} {blob}")
            if mounted:
                request.send(201, headers={"Location": f"/v2/{repo}/blobs/{blob}", "Docker-Content-Digest": blob})
            else:  # what distribution does when it cannot mount: open an upload instead
                request.send(202, headers={"Location": f"/v2/{repo}/blobs/uploads/fake-upload"})
            return
        if marker and method == "DELETE":  # an upload cancelled
            request.send(204)
            return
        self._error(request, 404, "UNSUPPORTED", f"{method} {path}")


# -- the engine -----------------------------------------------------------------------------------------------


@dataclass
class BuildRequest:
    tag: str
    buildargs: dict[str, str]
    labels: dict[str, str]
    dockerfile: str
    files: list[str]  # names in the context tar the SDK sent


@dataclass
class Container:
    id: str
    image: str
    command: list[str]
    exit_code: int = 0
    output: str = ""
    removed: bool = False


@dataclass
class FakeEngine(_Served):
    """Docker Engine API 1.41: version, ping, info, build, inspect, tag, untag, export, push, pull and containers.

    Scripts, keyed by image name (the last path component of the repository):
    - `build_streams[name]`: the chunks its build sends (default: two steps and the image ID);
    - `push_streams[name]`: the chunks its push sends (default: layers pushed, then the digest the
      registry stored: a push stores the manifest in `registry`);
    - `push_reports[name]`: a digest the push reports instead of the stored one;
    - `call_results[name]`: (exit code, output) of containers of that image (default: the import probe passes);
    - `build_delays[name]`: seconds its build takes;
    - `push_delays[name]`: seconds between the chunks of its push (a long upload, to cancel);
    - `sizes[name]`: the bytes its inspect reports (default 10 MB);
    - `on_build`: called with the tag before each build answers (to edit sources mid-run, say).
    """

    registry: FakeRegistry | None = None
    build_streams: dict[str, list[Chunk]] = field(default_factory=dict)
    push_streams: dict[str, list[Chunk]] = field(default_factory=dict)
    push_reports: dict[str, str] = field(default_factory=dict)
    pull_streams: dict[str, list[Chunk]] = field(default_factory=dict)
    call_results: dict[str, tuple[int, str]] = field(default_factory=dict)
    export_tars: dict[str, bytes] = field(default_factory=dict)
    driver_status: list[list[str]] = field(default_factory=lambda: [["Backing Filesystem", "extfs"]])
    build_delays: dict[str, float] = field(default_factory=dict)  # seconds before a build answers
    push_delays: dict[str, float] = field(default_factory=dict)  # seconds between the chunks of a push
    sizes: dict[str, int] = field(default_factory=dict)
    on_build: Callable[[str], None] | None = None

    def __post_init__(self) -> None:
        super().__init__()
        self.host = f"tcp://127.0.0.1:{self.port}"
        self.builds: list[BuildRequest] = []
        self.pushes: list[str] = []
        self.pulls: list[str] = []
        self.containers: dict[str, Container] = {}
        self.images: dict[str, str] = {}  # reference -> image ID
        self.untagged: list[str] = []  # references removed by DELETE /images/<reference>
        self.calls: list[str] = []  # "METHOD /path" of every request, version prefix removed
        self._lock = threading.Lock()

    # -- canned answers ------------------------------------------------------------------------------------

    @staticmethod
    def build_ok(tag: str) -> list[Chunk]:
        image_id = sha256(tag.encode())
        return [
            {"stream": "Step 1/2 : ARG BASE_IMAGE\n"},
            {"stream": " ---> Running in 0123456789ab\n"},
            {"stream": "Step 2/2 : FROM ${BASE_IMAGE}\n"},
            {"stream": f" ---> {image_id[7:19]}\n"},
            {"aux": {"ID": image_id}},
            {"stream": f"Successfully built {image_id[7:19]}\n"},
            {"stream": f"Successfully tagged {tag}\n"},
        ]

    @staticmethod
    def build_failing(step: str, message: str, code: int = 1) -> list[Chunk]:
        """A build whose RUN step `step` (e.g. "2/3 : RUN pip install x") exits non-zero, as the engine reports it."""
        return [
            {"stream": "Step 1/3 : FROM base\n"},
            {"stream": " ---> 0123456789ab\n"},
            {"stream": f"Step {step}\n"},
            {"stream": " ---> Running in 0123456789ab\n"},
            {"stream": f"{message}\n"},
            {
                "errorDetail": {
                    "code": code,
                    "message": f"The command '/bin/sh -c ...' returned a non-zero code: {code}",
                },
                "error": f"The command '/bin/sh -c ...' returned a non-zero code: {code}",
            },
        ]

    def _push_stream(self, repository: str, tag: str) -> list[Chunk]:
        name = image_name(repository)
        if name in self.push_streams:
            return self.push_streams[name]
        digest = None
        host, _, path = repository.partition("/")
        if self.registry is not None and host == self.registry.host:
            built = [b for b in self.builds if image_name(b.tag) == name]  # the labels of its latest build
            digest = self.registry.store(path, tag, labels=built[-1].labels if built else None)
        digest = self.push_reports.get(name, digest) or sha256(f"{repository}:{tag}".encode())
        return [
            {"status": f"The push refers to repository [{repository}]"},
            {"status": "Preparing", "progressDetail": {}, "id": "aaaaaaaaaaaa"},
            {"status": "Pushed", "progressDetail": {}, "id": "aaaaaaaaaaaa"},
            {"status": "Layer already exists", "progressDetail": {}, "id": "bbbbbbbbbbbb"},
            {"status": f"{tag}: digest: {digest} size: 528"},
            {"progressDetail": {}, "aux": {"Tag": tag, "Digest": digest, "Size": 528}},
        ]

    # -- dispatch ------------------------------------------------------------------------------------------

    def handle(self, request: _Handler, method: str) -> None:
        path, query = request.route()
        if path.startswith("/v1."):
            path = "/" + path.split("/", 2)[2]
        with self._lock:
            self.calls.append(f"{method} {path}")
        if path == "/version":
            request.send(
                200,
                {
                    "ApiVersion": API_VERSION,
                    "MinAPIVersion": "1.12",
                    "Version": "20.10.24",
                    "Os": "linux",
                    "Arch": "amd64",
                },
            )
        elif path == "/_ping":
            request.send(200, b"OK", content_type="text/plain")
        elif path == "/info":
            request.send(200, {"DriverStatus": self.driver_status, "OperatingSystem": "fake"})
        elif path == "/build" and method == "POST":
            self._build(request, query)
        elif path == "/images/create" and method == "POST":
            ref = query.get("fromImage", "") + (
                ("@" if query.get("tag", "").startswith("sha256:") else ":") + query["tag"] if query.get("tag") else ""
            )
            with self._lock:
                self.pulls.append(ref)
            request.stream(
                self.pull_streams.get(
                    image_name(ref),
                    [
                        {"status": "Pulling from x", "id": "latest"},
                        {"status": "Pull complete", "id": "aaaaaaaaaaaa"},
                        {"status": "Status: Downloaded newer image"},
                    ],
                )
            )
        elif path.startswith("/images/") and path.endswith("/json"):
            ref = path[len("/images/") : -len("/json")]
            with self._lock:  # by reference, or by image ID as the engine also answers
                known = ref if ref in self.images else next((r for r, i in self.images.items() if i == ref), None)
            if known is not None:
                request.send(
                    200,
                    {
                        "Id": self.images[known],
                        "Size": self.sizes.get(image_name(known), 10**7),
                        "RootFS": {"Type": "layers", "Layers": [sha256(f"diff {known}".encode())]},
                    },
                )
            else:
                request.send(404, {"message": f"No such image: {ref}"})
        elif path.startswith("/images/") and path.endswith("/history"):
            ref = path[len("/images/") : -len("/history")]
            with self._lock:
                known = ref if ref in self.images else next((r for r, i in self.images.items() if i == ref), None)
            if known is not None:  # one instruction, with the one layer the inspect above lists
                request.send(
                    200,
                    [
                        {
                            "Id": self.images[known],
                            "CreatedBy": "RUN x",
                            "Size": self.sizes.get(image_name(known), 10**7),
                        }
                    ],
                )
            else:
                request.send(404, {"message": f"No such image: {ref}"})
        elif path.startswith("/images/") and path.endswith("/tag") and method == "POST":
            ref = path[len("/images/") : -len("/tag")]
            with self._lock:
                image_id = self.images.get(ref) or (ref if ref in self.images.values() else None)
                if image_id is not None:
                    self.images[f"{query.get('repo', '')}:{query.get('tag') or 'latest'}"] = image_id
            request.send(201 if image_id else 404, None if image_id else {"message": f"No such image: {ref}"})
        elif path.startswith("/images/") and method == "DELETE":
            ref = path[len("/images/") :]
            with self._lock:
                image_id = self.images.pop(ref, None)
                if image_id is not None:
                    self.untagged.append(ref)
            request.send(
                200 if image_id else 404, [{"Untagged": ref}] if image_id else {"message": f"No such image: {ref}"}
            )
        elif path.startswith("/images/") and path.endswith("/get"):
            ref = path[len("/images/") : -len("/get")]
            if ref in self.export_tars:
                request.send(200, self.export_tars[ref], content_type="application/x-tar")
            else:
                request.send(404, {"message": f"reference does not exist: {ref}"})
        elif path.startswith("/images/") and path.endswith("/push") and method == "POST":
            repository = path[len("/images/") : -len("/push")]
            request.body()
            with self._lock:
                self.pushes.append(f"{repository}:{query.get('tag', '')}")
            request.stream(
                self._push_stream(repository, query.get("tag", "latest")),
                delay=self.push_delays.get(image_name(repository), 0.0),
            )
        elif path.startswith("/containers/"):
            self._containers(request, method, path, query)
        else:
            request.send(404, {"message": f"page not found: {method} {path}"})

    def _build(self, request: _Handler, query: dict[str, str]) -> None:
        context = request.body()
        tag = query.get("t", "")
        with tarfile.open(fileobj=io.BytesIO(context)) as tar:
            files = sorted(tar.getnames())
        with self._lock:
            self.builds.append(
                BuildRequest(
                    tag,
                    json.loads(query.get("buildargs", "{}")),
                    json.loads(query.get("labels", "{}")),
                    query.get("dockerfile", ""),
                    files,
                )
            )
        if self.on_build is not None:
            self.on_build(tag)
        time.sleep(self.build_delays.get(image_name(tag), 0.0))
        chunks = self.build_streams.get(image_name(tag)) or self.build_ok(tag)
        for chunk in chunks:
            if isinstance(chunk, dict) and isinstance(chunk.get("aux"), dict) and "ID" in chunk["aux"]:
                with self._lock:
                    self.images[tag] = chunk["aux"]["ID"]
        request.stream(chunks)

    def _containers(self, request: _Handler, method: str, path: str, query: dict[str, str]) -> None:
        parts = path.strip("/").split("/")  # containers, <id or create>, [action]
        if parts[1] == "create" and method == "POST":
            spec = json.loads(request.body() or b"{}")
            image = spec.get("Image", "")
            with self._lock:
                cid = hashlib.sha256(f"{image}{len(self.containers)}".encode()).hexdigest()
                code, output = self.call_results.get(image_name(image), (0, probe_output()))
                self.containers[cid] = Container(cid, image, list(spec.get("Cmd") or []), code, output)
            request.send(201, {"Id": cid, "Warnings": []})
            return
        container = self.containers.get(parts[1])
        if container is None:
            request.send(404, {"message": f"No such container: {parts[1]}"})
            return
        action = parts[2] if len(parts) > 2 else ""
        if action == "json":
            request.send(
                200,
                {
                    "Id": container.id,
                    "Name": "/fake",
                    "Image": container.image,
                    "Config": {"Tty": False, "Image": container.image, "Cmd": container.command},
                    "State": {"Status": "created", "Running": False, "ExitCode": 0},
                },
            )
        elif action == "start":
            request.body()
            request.send(204)
        elif action == "wait":
            request.send(200, {"StatusCode": container.exit_code, "Error": None})
        elif action == "logs":
            data = container.output.encode()
            frame = bytes([1, 0, 0, 0]) + len(data).to_bytes(4, "big") + data  # stdout, multiplexed
            request.send(200, frame, content_type="application/vnd.docker.raw-stream")
        elif action == "" and method == "DELETE":
            container.removed = True
            request.send(204)
        else:
            request.send(404, {"message": f"page not found: {method} {path}"})


def fakes() -> Iterator[tuple[FakeEngine, FakeRegistry]]:
    """An engine wired to a registry; both closed afterwards (use as a fixture body)."""
    registry = FakeRegistry()
    engine = FakeEngine(registry=registry)
    try:
        yield engine, registry
    finally:
        engine.close()
        registry.close()
    assert not engine.failures + registry.failures, "the fake engine or registry failed"
