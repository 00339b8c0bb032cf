"""A fake Kubeflow Pipelines v1 API server (apis/v1beta1), a real HTTP(S) server on 127.0.0.1, for tests.

It answers what `kfp.Client` of kfp 1.8 sends for `buildtool submit`: healthz, pipelines (list with a
`filter` on name, upload as multipart), pipeline versions (list, upload), experiments (list, create)
and runs (create, get). Where it matters it behaves as the real server (backend/src/apiserver of KFP 1.8):

- a duplicate pipeline, version (within its pipeline) or experiment (within its namespace) name is 409;
- uploading a pipeline creates its first version, named after the pipeline and sharing its id, as default;
- a new version becomes the pipeline's default version;
- a run's parameters must be declared by its version's workflow (400 otherwise);
- an empty list is `{}` (grpc-gateway leaves out empty fields).

Every response body is checked, before it is sent, to deserialize through `kfp_server_api`'s own model of
that response and to serialize back to the same JSON: a field the client does not know, or a wrong shape,
fails the test here rather than drifting silently from the API the client speaks.

Scripted faults: `fail_next` (statuses answered before the real answer), `token`/`cookie` (401 without),
`forbidden` (403), `run_states` (what successive GETs of a run report), `barrier` (hold pipeline
listings until N callers listed: two submits at once then both see the pipeline missing).
"""

from __future__ import annotations

import datetime
import email.parser
import email.policy
import json
import re
import ssl
import threading
import urllib.parse
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace
from typing import Any

import kfp_server_api
import yaml

PREFIX = "/apis/v1beta1"
MAX_UPLOAD = 32 * 1024 * 1024  # the real server's limit for a pipeline file
_RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _normalized(value: Any) -> Any:
    """JSON with timestamps as datetimes (the model re-serializes them in isoformat, not with 'Z')."""
    if isinstance(value, dict):
        return {k: _normalized(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_normalized(v) for v in value]
    if isinstance(value, str) and _RFC3339.match(value):
        return datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return value


_API = kfp_server_api.ApiClient()


def checked(body: dict[str, Any], model: str) -> dict[str, Any]:
    """`body`, after asserting that kfp_server_api's `model` reads it and writes back the same JSON."""
    parsed = _API.deserialize(SimpleNamespace(data=json.dumps(body)), model)
    again = _API.sanitize_for_serialization(parsed)
    assert _normalized(again) == _normalized(body), f"{model} does not round-trip: sent {body}, model gives {again}"
    return body


@dataclass
class Version:
    id: str
    name: str
    pipeline_id: str
    created_at: str
    package: bytes
    parameters: list[dict[str, str]]

    def api(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "created_at": self.created_at,
            "resource_references": [{"key": {"type": "PIPELINE", "id": self.pipeline_id}, "relationship": "OWNER"}],
        }
        if self.parameters:
            out["parameters"] = self.parameters
        return out


@dataclass
class Pipeline:
    id: str
    name: str
    created_at: str
    default_version: str
    versions: dict[str, Version] = field(default_factory=dict)  # by id

    def api(self) -> dict[str, Any]:
        default = self.versions[self.default_version]
        out: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "created_at": self.created_at,
            "default_version": default.api(),
        }
        if default.parameters:
            out["parameters"] = default.parameters
        return out


@dataclass
class Run:
    id: str
    name: str
    experiment_id: str
    version_id: str
    parameters: dict[str, str]
    created_at: str
    states: list[str]

    def api(self, state: str) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "storage_state": "STORAGESTATE_AVAILABLE",
            "created_at": self.created_at,
            "scheduled_at": self.created_at,
            "pipeline_spec": {"parameters": [{"name": k, "value": v} for k, v in self.parameters.items()]},
            "resource_references": [
                {"key": {"type": "EXPERIMENT", "id": self.experiment_id}, "relationship": "OWNER"},
                {"key": {"type": "PIPELINE_VERSION", "id": self.version_id}, "relationship": "CREATOR"},
            ],
        }
        if not self.parameters:
            del out["pipeline_spec"]["parameters"]
        if state:
            out["status"] = state
        return out


def _declared(package: bytes) -> list[dict[str, str]]:
    """The parameters a KFP v1 workflow declares, as the server lists them."""
    workflow = yaml.safe_load(package)
    items = workflow.get("spec", {}).get("arguments", {}).get("parameters", []) or []
    return [{"name": p["name"], **({"value": str(p["value"])} if "value" in p else {})} for p in items]


def _filter_name(query: dict[str, list[str]]) -> str | None:
    """The name of an EQUALS predicate on `name`; ValueError on a filter the real server would refuse."""
    raw = query.get("filter", [""])[0]
    if not raw:
        return None
    parsed = json.loads(raw)
    name = None
    for predicate in parsed.get("predicates", []):
        if predicate.get("key") != "name" or predicate.get("op") not in ("EQUALS", 1):
            raise ValueError(f"unsupported predicate {predicate}")
        name = predicate.get("stringValue", predicate.get("string_value"))
    return name


class FakeKfp:
    """The server's state, and the thread serving it; use as a context manager."""

    def __init__(self, *, tls: ssl.SSLContext | None = None, port: int = 0) -> None:
        self.lock = threading.RLock()
        self.pipelines: dict[str, Pipeline] = {}
        self.experiments: dict[str, dict[str, Any]] = {}
        self.runs: dict[str, Run] = {}
        self.uploads: list[tuple[str, str, bytes]] = []  # (kind, name, bytes) of every upload accepted
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request
        self.headers_seen: list[dict[str, str]] = []
        self.changes = 0  # requests that changed something
        self.token: str | None = None
        self.cookie: str | None = None
        self.forbidden = False
        self.fail_next: list[int] = []
        # Whole answers sent before the real ones, as they are (a hostile or broken server): the body is bytes,
        # or a dict sent as JSON unchecked; the fourth item holds extra headers.
        self.script: list[tuple[int, Any, None, dict[str, str]]] = []
        self.run_states: list[str] = ["Running", "Succeeded"]
        self.barrier: threading.Barrier | None = None
        self.multi_user = False
        server = ThreadingHTTPServer(("127.0.0.1", port), _handler(self))
        server.daemon_threads = True
        if tls is not None:
            server.socket = tls.wrap_socket(server.socket, server_side=True)
        self.server = server
        self.port = server.server_address[1]
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        # A short poll: shutdown() waits for the loop to notice, 0.5 s by default, once per test.
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> FakeKfp:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    # -- what tests read ------------------------------------------------------------------------------------

    def pipeline(self, name: str) -> Pipeline | None:
        return next((p for p in self.pipelines.values() if p.name == name), None)

    def versions(self, name: str) -> list[str]:
        found = self.pipeline(name)
        return sorted(v.name for v in found.versions.values()) if found else []

    # -- the API ----------------------------------------------------------------------------------------------

    def handle(
        self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str], body: bytes
    ) -> tuple[Any, ...]:
        """(status, JSON body, the kfp_server_api model it must deserialize as[, extra headers])."""
        with self.lock:
            self.requests.append((method, path))
            self.headers_seen.append(headers)
            if self.fail_next:
                return self.fail_next.pop(0), {"error": "injected", "code": 13, "message": "injected"}, None
            if self.script:
                return self.script.pop(0)
        if path == f"{PREFIX}/healthz" and method == "GET":
            # kfp_server_api 1.8.5's model holds multi_user only (the check below refused commit_sha, tag_name).
            return 200, {"multi_user": self.multi_user}, "ApiGetHealthzResponse"
        auth = headers.get("authorization", "")
        cookie = headers.get("cookie", "")
        if (self.token and auth != f"Bearer {self.token}") or (self.cookie and self.cookie not in cookie):
            return 401, {"error": "Unauthenticated: request has no valid credential", "code": 16}, None
        if self.forbidden:
            return 403, {"error": "PermissionDenied: the identity may not access namespace", "code": 7}, None
        try:
            return self._route(method, path, query, headers, body)
        except (ValueError, KeyError) as exc:
            return 400, {"error": f"Invalid input error: {exc}", "code": 3}, None

    def _route(
        self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, Any], str | None]:
        if path == f"{PREFIX}/pipelines" and method == "GET":
            name = _filter_name(query)
            barrier = self.barrier
            if barrier is not None:  # once: the listings that read the pipeline back after a 409 go through
                barrier.wait(10)
                self.barrier = None
            with self.lock:
                found = [p.api() for p in self.pipelines.values() if name is None or p.name == name]
            return 200, ({"pipelines": found, "total_size": len(found)} if found else {}), "ApiListPipelinesResponse"
        if path == f"{PREFIX}/pipelines/upload" and method == "POST":
            name = query.get("name", [""])[0]
            package = _upload(headers, body)
            with self.lock:
                if not name or self.pipeline(name):
                    return (
                        409,
                        {"error": f"Already exist error: a pipeline named {name} already exists", "code": 6},
                        None,
                    )
                pid, now = str(uuid.uuid4()), _now()
                version = Version(pid, name, pid, now, package, _declared(package))
                self.pipelines[pid] = Pipeline(pid, name, now, pid, {pid: version})
                self.uploads.append(("pipeline", name, package))
                self.changes += 1
                return 200, self.pipelines[pid].api(), "ApiPipeline"
        if path == f"{PREFIX}/pipelines/upload_version" and method == "POST":
            name, pid = query.get("name", [""])[0], query.get("pipelineid", [""])[0]
            package = _upload(headers, body)
            with self.lock:
                pipeline = self.pipelines.get(pid)
                if pipeline is None:
                    return 404, {"error": f"Pipeline {pid} not found", "code": 5}, None
                if not name or any(v.name == name for v in pipeline.versions.values()):
                    return 409, {"error": f"Already exist error: version {name} already exists", "code": 6}, None
                version = Version(str(uuid.uuid4()), name, pid, _now(), package, _declared(package))
                pipeline.versions[version.id] = version
                pipeline.default_version = version.id
                self.uploads.append(("version", name, package))
                self.changes += 1
                return 200, version.api(), "ApiPipelineVersion"
        if path == f"{PREFIX}/pipeline_versions" and method == "GET":
            if query.get("resource_key.type") != ["PIPELINE"]:
                raise ValueError("resource_key.type must be PIPELINE")
            name = _filter_name(query)
            with self.lock:
                pipeline = self.pipelines.get(query.get("resource_key.id", [""])[0])
                if pipeline is None:
                    return 404, {"error": "Pipeline not found", "code": 5}, None
                found = [v.api() for v in pipeline.versions.values() if name is None or v.name == name]
            return (
                200,
                ({"versions": found, "total_size": len(found)} if found else {}),
                "ApiListPipelineVersionsResponse",
            )
        if path == f"{PREFIX}/experiments" and method == "GET":
            name = _filter_name(query)
            namespace = query.get("resource_reference_key.id", [""])[0]
            with self.lock:
                found = [
                    e
                    for e in self.experiments.values()
                    if (name is None or e["name"] == name) and _namespace(e) == namespace
                ]
            return (
                200,
                ({"experiments": found, "total_size": len(found)} if found else {}),
                "ApiListExperimentsResponse",
            )
        if path == f"{PREFIX}/experiments" and method == "POST":
            request = json.loads(body)
            checked(request, "ApiExperiment")
            with self.lock:
                if any(
                    e["name"] == request["name"] and _namespace(e) == _namespace(request)
                    for e in self.experiments.values()
                ):
                    return 409, {"error": f"Already exist error: experiment {request['name']}", "code": 6}, None
                experiment = {
                    "id": str(uuid.uuid4()),
                    "name": request["name"],
                    "created_at": _now(),
                    "storage_state": "STORAGESTATE_AVAILABLE",
                }
                if request.get("resource_references"):
                    experiment["resource_references"] = request["resource_references"]
                self.experiments[experiment["id"]] = experiment
                self.changes += 1
                return 200, experiment, "ApiExperiment"
        if path == f"{PREFIX}/runs" and method == "POST":
            request = json.loads(body)
            checked(request, "ApiRun")
            refs = {r["key"]["type"]: r["key"]["id"] for r in request.get("resource_references", [])}
            with self.lock:
                if refs.get("EXPERIMENT") not in self.experiments:
                    return 404, {"error": "Experiment not found", "code": 5}, None
                version = next(
                    (
                        v
                        for p in self.pipelines.values()
                        for v in p.versions.values()
                        if v.id == refs.get("PIPELINE_VERSION")
                    ),
                    None,
                )
                if version is None:
                    return 404, {"error": "Pipeline version not found", "code": 5}, None
                params = {p["name"]: p.get("value", "") for p in request.get("pipeline_spec", {}).get("parameters", [])}
                declared = {p["name"] for p in version.parameters}
                unknown = sorted(set(params) - declared)
                if unknown:
                    raise ValueError(f"Unrecognized input parameter: {unknown[0]}")
                run = Run(
                    str(uuid.uuid4()),
                    request["name"],
                    refs["EXPERIMENT"],
                    version.id,
                    params,
                    _now(),
                    list(self.run_states),
                )
                self.runs[run.id] = run
                self.changes += 1
                return 200, {"run": run.api(""), "pipeline_runtime": {"workflow_manifest": "{}"}}, "ApiRunDetail"
        match = re.fullmatch(f"{PREFIX}/runs/([^/]+)", path)
        if match and method == "GET":
            with self.lock:
                run = self.runs.get(match[1])
                if run is None:
                    return 404, {"error": "Run not found", "code": 5}, None
                state = run.states.pop(0) if len(run.states) > 1 else run.states[0]
                return 200, {"run": run.api(state), "pipeline_runtime": {"workflow_manifest": "{}"}}, "ApiRunDetail"
        return 404, {"error": f"Not Found: {method} {path}", "code": 5}, None


def _namespace(experiment: dict[str, Any]) -> str:
    for ref in experiment.get("resource_references", []) or []:
        if ref.get("key", {}).get("type") == "NAMESPACE":
            return str(ref["key"]["id"])
    return ""


def _upload(headers: dict[str, str], body: bytes) -> bytes:
    """The `uploadfile` part of a multipart/form-data body, as the real server reads it."""
    if len(body) > MAX_UPLOAD:
        raise ValueError("the file is larger than 32 MB")
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + headers.get("content-type", "").encode() + b"\r\n\r\n" + body
    )
    if not message.is_multipart():
        raise ValueError("expected multipart/form-data")
    for part in message.iter_parts():
        if part.get_param("name", header="content-disposition") == "uploadfile":
            filename = part.get_filename() or ""
            if not filename.endswith((".yaml", ".yml", ".zip", ".tar.gz", ".tgz")):
                raise ValueError(f"unexpected file type {filename}")
            payload = part.get_payload(decode=True)
            assert isinstance(payload, bytes)
            return payload
    raise KeyError("uploadfile")


def _handler(fake: FakeKfp) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms wait on the client's ACK

        def log_message(self, *_: Any) -> None:
            pass

        def _serve(self) -> None:
            parsed = urllib.parse.urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, answer, model, *extra = fake.handle(
                self.command, parsed.path, urllib.parse.parse_qs(parsed.query), headers, body
            )
            if model is not None:
                checked(answer, model)
            data = answer if isinstance(answer, bytes) else json.dumps(answer).encode()
            self.send_response(status)
            more = extra[0] if extra else {}
            self.send_header("Content-Type", more.pop("Content-Type", "application/json"))
            for key, value in more.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_DELETE = _serve

    return Handler


def main() -> None:
    """`python -m tests.fake_kfp [PORT]`: serve until interrupted (to try `buildtool submit` by hand, or time it)."""
    import sys
    import time

    fake = FakeKfp(port=int(sys.argv[1]) if len(sys.argv) > 1 else 0)
    with fake:
        print(f"fake KFP v1 API on {fake.url}", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
