"""scripts/infra-up.sh uses what already answers and installs only what is missing.

The script runs for real (bash, curl, flock) against a real local HTTP server
standing in for the registry. The machine's package manager and engine CLI are
the only stand-ins: `apt-get` records what it is asked to install, `dpkg-query`
answers from that record, and `docker info` answers like a running Docker CE
(a GitHub runner's engine, which docker.io would conflict with).
"""

from __future__ import annotations

import http.server
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TOOLS = (
    "curl",
    "flock",
    "timeout",
    "cat",
    "mkdir",
    "id",
    "tail",
    "sed",
    "grep",
    "mktemp",
    "cmp",
    "mv",
    "rm",
    "chmod",
    "dirname",
    "date",
    "env",
    "sleep",
    "setsid",
)
BASE_PACKAGES = "debootstrap debian-archive-keyring ca-certificates curl python3 python3-venv"

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not Path("/etc/debian_version").exists(), reason="infra-up.sh runs as root on Debian"
)


class _Registry(http.server.BaseHTTPRequestHandler):
    def _ok(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        if self.command == "GET":
            self.wfile.write(b"{}")

    do_GET = do_HEAD = _ok

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def registry() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Registry)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()  # a quick shutdown
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _script(path: Path, text: str) -> None:
    path.write_text("#!/bin/bash\n" + text)
    path.chmod(0o755)


def run_infra_up(tmp_path: Path, registry: str, *, skopeo: bool) -> tuple[subprocess.CompletedProcess[str], str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in TOOLS:
        found = shutil.which(tool)
        assert found, tool
        (bin_dir / tool).symlink_to(found)
    installs = tmp_path / "apt-get.log"
    installs.write_text("")
    _script(bin_dir / "apt-get", f'echo "$*" >> {installs}\n')
    _script(
        bin_dir / "dpkg-query",
        f"""pkg=${{@: -1}}
for p in {BASE_PACKAGES}; do [ "$p" = "$pkg" ] && {{ echo "install ok installed"; exit 0; }}; done
grep -qw -- "$pkg" {installs} && {{ echo "install ok installed"; exit 0; }}
exit 1
""",
    )
    _script(bin_dir / "docker", "exit 0\n")  # `docker info`: an engine answers
    if skopeo:
        _script(bin_dir / "skopeo", 'echo "skopeo version 1.9.3"\n')
    env = {
        "PATH": str(bin_dir),
        "BUILDTOOL_STATE_DIR": str(tmp_path / "state"),
        "BUILDTOOL_RUN_DIR": str(tmp_path / "run"),
        "BUILDTOOL_REGISTRY_ADDR": registry,
        "HOME": str(tmp_path),
    }
    done = subprocess.run(
        ["/bin/bash", str(REPO / "scripts" / "infra-up.sh")], env=env, capture_output=True, text=True, timeout=120
    )
    return done, installs.read_text()


def test_an_answering_engine_registry_and_skopeo_install_nothing(tmp_path, registry):
    done, installs = run_infra_up(tmp_path, registry, skopeo=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"BUILDTOOL_BASE_IMAGE={registry}/buildtool/python:3.11-bookworm\n"
    assert installs == ""  # no docker.io beside the engine that answers, no docker-registry, no skopeo
    assert "a docker engine answers: using it, no engine package installed" in done.stderr
    assert f"a registry answers on {registry}: using it, no registry package installed" in done.stderr


def test_only_a_missing_skopeo_is_installed(tmp_path, registry):
    done, installs = run_infra_up(tmp_path, registry, skopeo=False)
    assert done.returncode == 0, done.stderr
    assert [line.split()[-1] for line in installs.splitlines()] == ["skopeo"]
    assert "docker.io" not in installs and "docker-registry" not in installs
