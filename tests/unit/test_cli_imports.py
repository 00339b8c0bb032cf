"""`import buildtool.cli` stays light: the engine, HTTP, kfp and multipart libraries load only in the commands."""

from __future__ import annotations

import os
import subprocess
import sys

PROBE = (
    "import buildtool.cli, sys; print(sorted(m for m in ('docker','requests','kfp','multipart') if m in sys.modules))"
)


def test_importing_the_cli_loads_no_heavy_library() -> None:
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]", f"import buildtool.cli loaded {done.stdout.strip()}"


def test_the_help_of_every_command_needs_no_heavy_library() -> None:
    # argparse builds every subcommand (and its option defaults) at parse time: the help shows them.
    probe = (
        "import sys\nfrom buildtool import cli\n"
        "try:\n    cli.main(['platform', 'serve', '--help'])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('docker','requests','kfp','multipart') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "COLUMNS": "1000"},
    )  # one option a line, unwrapped
    assert done.returncode == 0, done.stderr
    assert "seconds a login token stays valid (default: 3600.0)" in done.stdout
    assert "more get a 503 (default: 16)" in done.stdout
    assert "samples in a generated dataset (default: 200)" in done.stdout
    assert done.stdout.strip().splitlines()[-1] == "[]"
