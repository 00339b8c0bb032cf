"""What a `buildtool run` step can reach, and how a run ends on a signal: on the real engine, one row per case.

The attack: a step of an untrusted workflow talks to the registry on 127.0.0.1:5000, which accepts pushes
without a password (a step with host networking could move a content tag and poison the lock). Each row
runs a real step that tries to reach an endpoint and checks the exit code, the message, and that no
container of the run is left.
"""

# No `from __future__ import annotations`: kfp reads the step functions' annotations as objects.
import http.server
import os
import signal
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import pytest
import yaml

from buildtool import cli
from buildtool.dev.run_plan import RUN_LABEL

from ..integration.conftest import BASE_IMAGE, engine_client, registry, served_digest  # noqa: F401  (fixtures)

pytestmark = pytest.mark.integration

SECRET = "sk-isolation-61c0-never-shown"
PLATFORM_REPLY = "platform-ok"


def reach(host: str, port: int) -> str:
    """GET http://HOST:PORT/v2/ (the registry's API root): the reply, or the step fails."""
    import urllib.request

    with urllib.request.urlopen(f"http://{host}:{port}/v2/", timeout=5) as response:
        return f"HTTP {response.status} {response.read(200).decode(errors='replace')}"


def hold(seconds: int) -> None:
    import time

    print("holding", flush=True)
    time.sleep(seconds)


def compile_function(function: object, image: str, path: Path) -> None:
    import kfp.compiler
    from kfp import dsl
    from kfp.components import create_component_from_func

    op = create_component_from_func(function, base_image=image)

    @dsl.pipeline(name="probe")
    def pipeline(host: str = "127.0.0.1", port: int = 5000, seconds: int = 1) -> None:
        if function is reach:
            op(host, port)
        else:
            op(seconds)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kfp.compiler.Compiler().compile(pipeline, str(path))


@pytest.fixture(scope="module")
def base(registry: str) -> str:  # noqa: F811
    digest = served_digest(BASE_IMAGE)
    assert digest, f"{BASE_IMAGE} is not in the registry; run scripts/infra-up.sh"
    return f"{BASE_IMAGE.rpartition(':')[0]}@{digest}"


@pytest.fixture(scope="module")
def platform_port() -> Iterator[int]:
    """A plain HTTP server on the host's loopback, standing for the platform server a run may be given."""

    class Reply(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
            body = PLATFORM_REPLY.encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Reply)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def bridge_gateway(client: docker.DockerClient) -> str:
    """The host's address on the engine's default bridge (the engine does not always record it: then the
    subnet's first address, which is where it puts the bridge)."""
    import ipaddress

    config = client.networks.get("bridge").attrs["IPAM"]["Config"][0]
    return str(config.get("Gateway") or next(ipaddress.ip_network(config["Subnet"]).hosts()))


@dataclass(frozen=True)
class Row:
    id: str
    host: str
    #: The port to reach; 0 stands for the test's platform server.
    port: int
    options: tuple[str, ...]
    code: int
    fragment: str


ROWS = [
    Row("registry-on-loopback", "127.0.0.1", 5000, (), 11, "step reach failed with exit code 1"),
    Row("registry-by-localhost", "localhost", 5000, (), 11, "step reach failed with exit code 1"),
    Row("registry-by-bridge-gateway", "{gateway}", 5000, (), 11, "step reach failed with exit code 1"),
    Row(
        "registry-while-another-endpoint-is-allowed",
        "127.0.0.1",
        5000,
        ("--allow-host", "127.0.0.1:{port}"),
        11,
        "step reach failed with exit code 1",
    ),
    Row("platform-not-allowed", "127.0.0.1", 0, (), 11, "step reach failed with exit code 1"),
    Row("platform-allowed", "127.0.0.1", 0, ("--allow-host", "127.0.0.1:{port}"), 0, f"HTTP 200 {PLATFORM_REPLY}"),
    Row(
        "platform-allowed-as-localhost",
        "localhost",
        0,
        ("--allow-host", "localhost:{port}"),
        0,
        f"HTTP 200 {PLATFORM_REPLY}",
    ),
    Row(
        "allow-a-non-loopback-host",
        "127.0.0.1",
        0,
        ("--allow-host", "{gateway}:5000"),
        11,
        "only an IPv4 loopback address or localhost can be forwarded",
    ),
    Row("allow-host-without-port", "127.0.0.1", 0, ("--allow-host", "127.0.0.1"), 11, "expected HOST:PORT"),
    Row(
        "host-network-with-allow-host",
        "127.0.0.1",
        0,
        ("--host-network", "--allow-host", "127.0.0.1:{port}"),
        11,
        "--host-network and --allow-host exclude each other",
    ),
    # What --host-network exposes, as its help says: the registry too.
    Row("host-network-exposes-the-registry", "127.0.0.1", 5000, ("--host-network",), 0, "HTTP 200 {}"),
]


def left(client: docker.DockerClient, workdir: Path) -> list[str]:
    return [c.name for c in client.containers.list(all=True, filters={"label": f"{RUN_LABEL}={workdir.resolve()}"})]


@pytest.mark.parametrize("row", ROWS, ids=[row.id for row in ROWS])
def test_what_a_step_reaches(
    row: Row,
    base: str,
    platform_port: int,
    tmp_path: Path,
    engine_client: docker.DockerClient,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    pipeline = tmp_path / "pipeline.yaml"
    compile_function(reach, base, pipeline)
    gateway = bridge_gateway(engine_client)
    host = row.host.format(gateway=gateway)
    options = [option.format(port=platform_port, gateway=gateway) for option in row.options]
    workdir = tmp_path / "work"
    code = cli.main(
        [
            "--config",
            str(tmp_path / "absent.toml"),
            "run",
            str(pipeline),
            "--workdir",
            str(workdir),
            "-p",
            f"host={host}",
            "-p",
            f"port={row.port or platform_port}",
            *options,
        ]
    )
    out, err = capsys.readouterr()
    assert code == row.code, out + err
    if code == 0:
        assert (workdir / "reach" / "reach-Output" / "data").read_text() == row.fragment
    else:
        [line] = [line for line in err.splitlines() if line.startswith("buildtool: error: ")]
        assert row.fragment in line, err
    assert left(engine_client, workdir) == []


def test_the_table_covers_every_case() -> None:
    assert len({row.id for row in ROWS}) == len(ROWS) >= 10


def test_a_secret_as_argv0_is_masked_in_the_engines_error(
    base: str,
    tmp_path: Path,
    engine_client: docker.DockerClient,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pipeline = tmp_path / "pipeline.yaml"
    compile_function(reach, base, pipeline)
    workflow = yaml.safe_load(pipeline.read_text())
    workflow["spec"]["arguments"]["parameters"].append({"name": "secret_key"})
    [template] = [t for t in workflow["spec"]["templates"] if "container" in t]
    template["container"]["command"] = ["{{workflow.parameters.secret_key}}"]
    pipeline.write_text(yaml.safe_dump(workflow))
    monkeypatch.setenv("PLATFORM_SECRET_KEY", SECRET)
    code = cli.main(
        ["--config", str(tmp_path / "absent.toml"), "run", str(pipeline), "--workdir", str(tmp_path / "work")]
    )
    out, err = capsys.readouterr()
    assert code == 11, err
    assert SECRET not in out + err
    [line] = [line for line in err.splitlines() if line.startswith("buildtool: error: ")]
    assert "***" in line and "executable file not found" in line, line
    assert left(engine_client, tmp_path / "work") == []


@pytest.mark.parametrize(
    ("signals", "code"),
    [((signal.SIGTERM,), 143), ((signal.SIGINT, signal.SIGINT), 130)],
    ids=["sigterm", "sigint-twice"],
)
def test_a_signal_removes_the_runs_containers_with_one_line(
    signals: tuple[int, ...],
    code: int,
    base: str,
    platform_port: int,
    tmp_path: Path,
    engine_client: docker.DockerClient,  # noqa: F811
) -> None:
    pipeline = tmp_path / "pipeline.yaml"
    compile_function(hold, base, pipeline)
    workdir = tmp_path / "work"
    # With --allow-host, the forwarder's container is the run's too: it must go as well.
    command = [
        sys.executable,
        "-m",
        "buildtool",
        "--config",
        str(tmp_path / "absent.toml"),
        "run",
        str(pipeline),
        "--workdir",
        str(workdir),
        "-p",
        "seconds=120",
        "--allow-host",
        f"127.0.0.1:{platform_port}",
    ]
    run = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
    )
    try:
        deadline = time.monotonic() + 120
        while len(left(engine_client, workdir)) < 2 and run.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(left(engine_client, workdir)) == 2, run.communicate(timeout=30)
        started = time.monotonic()
        for number in signals:
            run.send_signal(number)
            time.sleep(0.05)
        out, err = run.communicate(timeout=30)
        seconds = time.monotonic() - started
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate()
        for container in engine_client.containers.list(all=True, filters={"label": f"{RUN_LABEL}={workdir.resolve()}"}):
            container.remove(force=True)  # only if the run could not remove it itself
    assert run.returncode == code, err
    assert err.splitlines()[-1].startswith(
        f"buildtool: error: interrupted by {signal.Signals(signals[0]).name}: "
        "the step containers were stopped and removed"
    ), err
    assert sum(line.startswith("buildtool: error:") for line in err.splitlines()) == 1
    assert seconds < 15, f"{seconds:.1f}s"
    assert left(engine_client, workdir) == []
