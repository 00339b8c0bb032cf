"""`buildtool platform seed|serve` given bad input: one line, a documented exit code, nothing created."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from buildtool import cli
from buildtool.errors import ConfigError, PlatformError


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port another process (this test) listens on."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        yield int(listener.getsockname()[1])


# (id, arguments after `buildtool platform`, exit code, fragment of the one-line error)
CASES = [
    ("seed-parent-uid", ["seed", "../../x"], PlatformError.exit_code, "uid '../../x' is not valid"),
    ("seed-absolute-uid", ["seed", "/etc/x"], PlatformError.exit_code, "uid '/etc/x' is not valid"),
    ("seed-uid-newline", ["seed", "m1\n"], PlatformError.exit_code, r"uid 'm1\n' is not valid"),
    ("seed-uid-201-chars", ["seed", "u" * 201], PlatformError.exit_code, "is not valid"),
    ("seed-samples-0", ["seed", "ds", "--samples", "0"], PlatformError.exit_code, "--samples 0: give a whole number"),
    ("seed-samples-negative", ["seed", "ds", "--samples", "-5"], PlatformError.exit_code, "--samples -5"),
    ("seed-samples-huge", ["seed", "ds", "--samples", "1000000000"], PlatformError.exit_code, "from 1 to 100000"),
    (
        "serve-busy-port",
        ["serve", "--port", "{busy}"],
        PlatformError.exit_code,
        "cannot listen on 127.0.0.1:{busy}: Address already in use",
    ),
    ("serve-port-70000", ["serve", "--port", "70000"], PlatformError.exit_code, "port 70000 is not valid"),
    ("serve-port-negative", ["serve", "--port", "-1"], PlatformError.exit_code, "port -1 is not valid"),
    (
        "serve-token-ttl-0",
        ["serve", "--port", "0", "--token-ttl", "0"],
        PlatformError.exit_code,
        "token_ttl 0.0 is not valid",
    ),
    (
        "serve-token-ttl-nan",
        ["serve", "--port", "0", "--token-ttl", "nan"],
        PlatformError.exit_code,
        "token_ttl nan is not valid",
    ),
    ("serve-workers-0", ["serve", "--port", "0", "--workers", "0"], PlatformError.exit_code, "workers 0 is not valid"),
    ("serve-seed-bad-uid", ["serve", "--port", "0", "--seed-dataset", "../x"], PlatformError.exit_code, "uid '../x'"),
    (
        "serve-accounts-missing",
        ["serve", "--accounts", "{tmp}/none.yaml"],
        ConfigError.exit_code,
        "cannot read the accounts file",
    ),
    (
        "serve-accounts-not-a-map",
        ["serve", "--accounts", "{tmp}/list.yaml"],
        ConfigError.exit_code,
        "expected a mapping 'accounts'",
    ),
    (
        "serve-accounts-not-utf8",
        ["serve", "--accounts", "{tmp}/binary.yaml"],
        ConfigError.exit_code,
        "cannot read the accounts file",
    ),
    (  # the strict reader: the last of two keys would silently win
        "serve-accounts-duplicate-key",
        ["serve", "--accounts", "{tmp}/twice.yaml"],
        ConfigError.exit_code,
        "duplicate key dev at line 3",
    ),
    (
        "serve-accounts-alias",
        ["serve", "--accounts", "{tmp}/alias.yaml"],
        ConfigError.exit_code,
        "alias",
    ),
    (
        "serve-accounts-folder",
        ["serve", "--accounts", "{tmp}"],
        ConfigError.exit_code,
        "cannot read the accounts file",
    ),
]


@pytest.mark.parametrize(
    ("arguments", "code", "fragment"), [case[1:] for case in CASES], ids=[case[0] for case in CASES]
)
def test_platform_command_errors_are_one_line(tmp_path, capsys, busy_port, arguments, code, fragment):
    (tmp_path / "list.yaml").write_text("accounts: [a, b]\n")
    (tmp_path / "binary.yaml").write_bytes(b"accounts:\n  dev: \xff\xfe\n")
    (tmp_path / "twice.yaml").write_text("accounts:\n  dev: first-secret\n  dev: second-secret\n")
    (tmp_path / "alias.yaml").write_text("secret: &s first-secret\naccounts:\n  dev: *s\n")
    data = tmp_path / "data"
    values = {"busy": str(busy_port), "tmp": str(tmp_path)}
    argv = ["platform", *(argument.format(**values) for argument in arguments), "--data", str(data)]
    before = sorted(p.name for p in tmp_path.iterdir())

    rc = cli.main(argv)

    out, err = capsys.readouterr()
    assert rc == code != 1
    assert err.count("\n") <= 2 and "Traceback" not in err and "unexpected" not in err
    error_line = err.strip().splitlines()[-1]  # serve may first say it created the accounts file
    assert error_line.startswith("buildtool: error: ") and fragment.format(**values) in error_line
    assert out == ""
    assert not (tmp_path / "x").exists() and not Path("/etc/x").exists()
    assert not (data / "training_dataset").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) in (before, sorted([*before, "data"]))


def test_exit_code_12_is_the_platforms():
    assert PlatformError.exit_code == 12
    assert len({case[0] for case in CASES}) == len(CASES)


def test_a_good_seed_still_works(tmp_path, capsys):
    rc = cli.main(["platform", "seed", "ds-ok", "--samples", "3", "--data", str(tmp_path)])

    out, err = capsys.readouterr()
    assert rc == 0 and "seeded training dataset 'ds-ok'" in out
    assert (tmp_path / "training_dataset" / "ds-ok").stat().st_size > 0
    assert (tmp_path / "accounts.yaml").stat().st_mode & 0o777 == 0o600
