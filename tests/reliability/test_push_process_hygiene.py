"""buildtool killed with SIGKILL mid-push: skopeo must not outlive it, and its credentials go with the next run.

Each row kills a buildtool process that is pushing through a stand-in for skopeo: an executable that takes
skopeo's arguments, reads its authfile, and writes its "staging manifest" (a file) only after a few seconds,
as a real push writes the manifest last. Whatever the row, the same invariants hold: the stand-in is gone
within a second, no manifest is written after the kill, the authfile sat in a folder only its user can
enter, and the next run's start removes that folder with the credentials in it. The last rows plant a
folder others could read where the authfile goes: the credentials are refused, never written.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from buildtool.errors import PushError
from buildtool.push import skopeo, workdir

REPO = Path(__file__).resolve().parents[2]
SECRET = "registry-password-never-left-behind"

PUSH_SECONDS = 2.0  # the stand-in's push: longer than the 1 s it may outlive buildtool, short for the suite

# A stand-in for `skopeo copy ... --digestfile F --authfile A SRC DEST` that pushes slowly.
FAKE_SKOPEO = """\
#!{python}
import json, os, sys, time
args = sys.argv[1:]
authfile = args[args.index("--authfile") + 1]
digestfile = args[args.index("--digestfile") + 1]
json.load(open(authfile))  # skopeo reads its credentials first
with open(os.environ["FAKE_SKOPEO_STATE"] + "/pid", "w") as out:
    out.write(str(os.getpid()))
print("Copying blob sha256:0000", flush=True)
time.sleep({seconds})  # the layers go up...
with open(os.environ["FAKE_SKOPEO_STATE"] + "/manifest", "w") as out:
    out.write("written")  # ...and the manifest last: the unchecked staging image
with open(digestfile, "w") as out:
    out.write("sha256:" + "a" * 64)
"""

# The pushing buildtool: the skopeo pusher of one image, credentials from the engine's store (DOCKER_CONFIG).
BUILDTOOL = """\
import sys
from pathlib import Path
sys.path.insert(0, {repo!r})
from buildtool import reference
from buildtool.interrupt import Token
from buildtool.errors import PushError
from buildtool.push import skopeo, workdir
from buildtool.push.job import PushJob, staging_reference
from buildtool.push.skopeo import SkopeoPusher

target = reference.parse("registry.example.com:5000/lab/training:in-" + "1" * 16)
with workdir.work_folder(Path({root!r})) as folder:
    print(folder, flush=True)
    job = PushJob("training", "lab/training:in-" + "1" * 16, "sha256:" + "e" * 64, target,
                  staging_reference(target), folder, 6, Token(), lambda message: print(message, flush=True))
    SkopeoPusher({skopeo!r}).push(job)
"""


def _kill_group(process: subprocess.Popen[str]) -> None:
    os.killpg(process.pid, signal.SIGKILL)  # what CI does to a cancelled job's process group


def _kill_process(process: subprocess.Popen[str]) -> None:
    process.kill()  # the OOM killer, or `kill -9` of buildtool alone


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead: it waits for a parent that is gone to be reaped by init.
    return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"


@pytest.mark.parametrize("kill", [_kill_group, _kill_process], ids=["process-group-killed", "buildtool-killed"])
def test_skopeo_dies_with_buildtool_and_its_authfile_goes_next_run(tmp_path, kill):
    state, root, config = tmp_path / "state", tmp_path / "tmp", tmp_path / "docker"
    for folder in (state, root, config):
        folder.mkdir()
    skopeo = tmp_path / "skopeo"
    skopeo.write_text(FAKE_SKOPEO.format(python=sys.executable, seconds=PUSH_SECONDS))
    skopeo.chmod(0o755)
    auth = {"auths": {"registry.example.com:5000": {"auth": base64.b64encode(f"lab:{SECRET}".encode()).decode()}}}
    (config / "config.json").write_text(json.dumps(auth))
    env = {**os.environ, "DOCKER_CONFIG": str(config), "FAKE_SKOPEO_STATE": str(state)}
    script = BUILDTOOL.format(repo=str(REPO), root=str(root), skopeo=str(skopeo))
    process = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )  # a process group of its own, as under CI
    try:
        assert process.stdout is not None
        folder = Path(process.stdout.readline().strip())
        deadline = time.monotonic() + 20
        while not (state / "pid").exists() or not (state / "pid").read_text():
            assert time.monotonic() < deadline and process.poll() is None, "the stand-in never started"
            time.sleep(0.05)
        pid = int((state / "pid").read_text())
        authfiles = list((folder / "auth").glob("auth-*.json"))
        auth_mode = stat.S_IMODE((folder / "auth").stat().st_mode)

        kill(process)
        process.wait()
        killed_at = time.monotonic()
        while _alive(pid) and time.monotonic() - killed_at < 5:
            time.sleep(0.02)
        gone_after = time.monotonic() - killed_at
        time.sleep(PUSH_SECONDS + 0.5)  # as long as the stand-in would have taken to write its manifest
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    assert gone_after < 1.0, f"skopeo outlived buildtool by {gone_after:.1f} s"
    assert not (state / "manifest").exists()  # no unchecked staging manifest written after the kill
    assert len(authfiles) == 1 and SECRET not in authfiles[0].name
    assert auth_mode == 0o700
    assert authfiles[0].exists()  # a SIGKILL leaves it; the next start removes it
    assert workdir.clean_stale(root) == [folder]
    assert not folder.exists()
    assert not any(SECRET in path.read_text(errors="replace") for path in root.rglob("*") if path.is_file())


def _symlink_elsewhere(auth: Path, tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir(mode=0o700)
    auth.symlink_to(tmp_path / "elsewhere")


def _open_to_others(auth: Path, tmp_path: Path) -> None:
    auth.mkdir()
    auth.chmod(0o755)


def _a_file(auth: Path, tmp_path: Path) -> None:
    auth.write_text("")


@pytest.mark.parametrize(
    "plant",
    [_symlink_elsewhere, _open_to_others, _a_file],
    ids=["auth-folder-symlink", "auth-folder-0755", "auth-folder-is-a-file"],
)
def test_credentials_are_never_written_where_others_could_read_them(tmp_path, monkeypatch, plant):
    config = tmp_path / "docker"
    config.mkdir()
    auth = {"auths": {"registry.example.com:5000": {"auth": base64.b64encode(f"lab:{SECRET}".encode()).decode()}}}
    (config / "config.json").write_text(json.dumps(auth))
    monkeypatch.setenv("DOCKER_CONFIG", str(config))
    run = tmp_path / "run"
    run.mkdir(mode=0o700)
    plant(run / "auth", tmp_path)

    with pytest.raises(PushError, match=r"auth is not a private folder of this user \(0700\): remove it"):
        skopeo.write_authfile(run, "registry.example.com:5000")

    written = [path for path in tmp_path.rglob("*") if path.is_file() and path.name != "config.json"]
    assert not any(SECRET in path.read_text(errors="replace") for path in written)
