"""The push's temporary folder: removed at the end, and at the next start when a run was killed."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

from buildtool.push import workdir


def test_the_folder_goes_at_the_end_even_on_an_error(tmp_path):
    try:
        with workdir.work_folder(tmp_path) as folder:
            (folder / "layer.tar").write_bytes(b"x" * 1000)
            raise KeyboardInterrupt
    except KeyboardInterrupt:
        pass
    assert not folder.exists()


def test_a_killed_runs_folder_is_removed_and_a_live_ones_kept(tmp_path):
    # A run killed with SIGKILL: its folder and lock file stay, nobody holds the lock.
    killed = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        sys.path.insert(0, {os.getcwd()!r})
        from buildtool.push import workdir
        with workdir.work_folder(Path({str(tmp_path)!r})) as folder:
            (folder / "docker-tar123").write_bytes(b"x" * 100000)
            print(folder, flush=True)
            time.sleep(60)
    """),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert killed.stdout is not None
    stale = killed.stdout.readline().strip()
    live = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        sys.path.insert(0, {os.getcwd()!r})
        from buildtool.push import workdir
        with workdir.work_folder(Path({str(tmp_path)!r})) as folder:
            print(folder, flush=True)
            time.sleep(60)
    """),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert live.stdout is not None
    running = live.stdout.readline().strip()
    killed.kill()
    killed.wait()
    assert os.path.isdir(stale)
    old = tmp_path / (workdir.PREFIX + "from-an-old-version")  # no lock file, long untouched
    old.mkdir()
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    try:
        removed = workdir.clean_stale(tmp_path)
        assert {str(p) for p in removed} == {stale, str(old)}
        assert os.path.isdir(running)
    finally:
        live.kill()
        live.wait()
