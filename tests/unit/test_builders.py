"""The builders: the BuildKit Dockerfile derivation, its command line, and how `auto` chooses. No engine."""

from __future__ import annotations

import stat
import tarfile
from pathlib import Path

import pytest

from buildtool import builders, buildkit_probe
from buildtool.errors import ConfigError
from buildtool.inputs import context
from buildtool.interrupt import Token

from ..conftest import REPO

MARKED = """\
FROM x
# buildtool: cache-mount /root/.cache/uv --no-cache
RUN set -eux; \\
    uv pip install --no-cache --require-hashes \\
    # a comment inside the instruction
        -r a.txt --no-cache; \\
    echo --no-cache-dir
RUN uv pip install --no-cache -r b.txt
"""


def test_a_marked_run_gets_a_cache_mount_and_loses_the_no_cache_flag():
    out = builders.with_cache_mounts(MARKED)
    lines = out.splitlines()
    assert lines[2].startswith(
        "RUN --mount=type=cache,id=buildtool-installer-root-cache-uv,target=/root/.cache/uv,sharing=locked set -eux;"
    )
    assert "--no-cache " not in "\n".join(lines[2:7]) and "--no-cache;" not in "\n".join(lines[2:7])
    assert lines[6] == "    echo --no-cache-dir"  # another word that only starts like the flag stays
    assert lines[7] == "RUN uv pip install --no-cache -r b.txt"  # an unmarked RUN is left alone
    assert lines[1] == MARKED.splitlines()[1]


@pytest.mark.parametrize(
    "text",
    [
        "FROM x\n# buildtool: cache-mount /root/.cache/uv --no-cache\nENV A=1\nRUN a --no-cache\n",  # not right after
        "FROM x\n# buildtool: cache-mount relative --no-cache\nRUN a --no-cache\n",  # not an absolute target
        "FROM x\n# buildtool: cache-mount /root/.cache/uv\nRUN a --no-cache\n",  # no flag
        "FROM x\nRUN a\n",
    ],
)
def test_anything_else_is_kept_byte_for_byte(text):
    assert builders.with_cache_mounts(text) == text


def test_the_rendered_training_dockerfile_gets_a_mount_on_each_install():
    text = (REPO / "images/training/Dockerfile").read_text()
    out = builders.with_cache_mounts(text)
    installs = text.count("# buildtool: cache-mount ")
    assert installs >= 2 and out.count("RUN --mount=type=cache,") == installs
    assert out.count(" --no-cache ") == text.count(" --no-cache ") - installs
    assert len(out.splitlines()) == len(text.splitlines())


def test_buildkit_gets_the_classic_context_with_its_dockerfile_replaced(tmp_path):
    root = tmp_path / "ctx"  # beside the cache folder (XDG_CACHE_HOME), not around it
    root.mkdir()
    (root / "Dockerfile").write_text("FROM x\n")
    (root / "run.sh").write_text("echo\n")
    (root / "run.sh").chmod(0o755)
    (root / "key.secret").write_text("s")
    (root / ".dockerignore").write_text("*.secret\n")
    scanned = context.scan(root)
    with tarfile.open(fileobj=builders._context_with(scanned, "FROM y\n")) as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert set(members) == {e.path for e in scanned.entries}
        dockerfile = tar.extractfile(members["Dockerfile"])
        assert dockerfile is not None and dockerfile.read() == b"FROM y\n"
        assert members["run.sh"].mode & stat.S_IXUSR


def test_the_buildkit_command_line(tmp_path):
    (tmp_path / "Dockerfile").write_text("FROM x\n")
    request = builders.BuildRequest(
        context.scan(tmp_path),
        "r/x:in-1",
        {"BASE_IMAGE": "r/base@sha256:" + "a" * 64},
        "linux/amd64",
        {"buildtool.image": "x"},
        ["r/x@sha256:" + "b" * 64],
        progress=print,
        token=Token(),
    )
    argv = builders.BuildKitBuilder("/usr/bin/docker").command(request, tmp_path / "iid")
    assert argv[:2] == ["/usr/bin/docker", "build"] and argv[-1] == "-"  # the context comes on stdin
    assert ["--platform", "linux/amd64"] == argv[argv.index("--platform") : argv.index("--platform") + 2]
    assert "BASE_IMAGE=r/base@sha256:" + "a" * 64 in argv and "buildtool.image=x" in argv
    assert "BUILDKIT_INLINE_CACHE=1" in argv and "--cache-from" in argv
    assert ["--file", "Dockerfile"] == argv[argv.index("--file") : argv.index("--file") + 2]


class NoEngine:
    def untag(self, ref: str) -> None:
        pass

    def identity(self) -> str:
        return "engine-id/20.10.24"


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    """The probe cache goes to this test's folder, never the user's."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def fake_cli(tmp_path: Path, name: str, script: str) -> str:
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(0o755)
    return str(path)


def test_auto_falls_back_to_classic_and_says_why(tmp_path, monkeypatch, project):
    from buildtool import config

    broken = fake_cli(
        tmp_path, "docker", "echo 'ERROR: BuildKit is enabled but the buildx component is missing' >&2\nexit 1\n"
    )
    monkeypatch.setattr(buildkit_probe, "CLI_CANDIDATES", (str(tmp_path / "absent"), broken))
    loaded = config.load(project)
    chosen, why = builders.choose(loaded, NoEngine(), "auto")  # type: ignore[arg-type]
    assert chosen.name == "classic"
    assert "BuildKit unavailable" in why and "buildx component is missing" in why and "absent: not found" in why
    with pytest.raises(ConfigError, match='builder = "buildkit" but no docker CLI builds with BuildKit here'):
        builders.choose(loaded, NoEngine(), "buildkit")  # type: ignore[arg-type]
    chosen, why = builders.choose(loaded, NoEngine(), "classic")  # type: ignore[arg-type]
    assert chosen.name == "classic" and why == "builder: classic (the engine's API)"


def test_auto_takes_a_cli_whose_probe_build_succeeds(tmp_path, monkeypatch, project):
    from buildtool import config

    # The probe reads the Dockerfile on stdin and writes the image ID where --iidfile says.
    probes = tmp_path / "probes"
    working = fake_cli(
        tmp_path,
        "docker",
        f'echo probe >> {probes}; while [ "$1" != --iidfile ]; do shift; done; cat >/dev/null; echo sha256:1 > "$2"\n',
    )
    monkeypatch.setattr(buildkit_probe, "CLI_CANDIDATES", (working,))
    chosen, why = builders.choose(config.load(project), NoEngine(), "auto")  # type: ignore[arg-type]
    assert chosen.name == "auto" and why.startswith(f"builder: auto: buildkit (DOCKER_BUILDKIT=1 {working} build)")
    assert isinstance(chosen, builders.AutoBuilder)
    # BuildKit for a Dockerfile with an installer cache to mount, the classic builder for the others.
    marked, plain = tmp_path / "marked", tmp_path / "plain"
    for folder, text in ((marked, MARKED), (plain, "FROM x\nRUN a\n")):
        folder.mkdir()
        (folder / "Dockerfile").write_text(text)
    assert chosen.for_context(context.scan(marked)).name == "buildkit"
    assert chosen.for_context(context.scan(plain)).name == "classic"
    assert builders.choose(config.load(project), NoEngine(), "buildkit")[0].name == "buildkit"  # type: ignore[arg-type]
    # Remembered for this CLI file and engine: the next run does not probe again; a changed CLI is probed.
    assert builders.choose(config.load(project), NoEngine(), "auto")[0].name == "auto"  # type: ignore[arg-type]
    assert probes.read_text().count("probe") == 1
    Path(working).write_text(Path(working).read_text() + "# upgraded\n")
    assert builders.choose(config.load(project), NoEngine(), "auto")[0].name == "auto"  # type: ignore[arg-type]
    assert probes.read_text().count("probe") == 2
    assert (tmp_path / "cache" / "buildtool" / buildkit_probe.PROBE_FILE).is_file()


def test_a_builder_that_is_not_known_is_a_config_error(tmp_path):
    from buildtool import config

    from ..conftest import write_project

    path = write_project(tmp_path, "")
    path.write_text(path.read_text().replace('repository = "t"', 'repository = "t"\nbuilder = "kaniko"'))
    with pytest.raises(ConfigError, match="builder: 'kaniko' is not one of auto, classic, buildkit"):
        config.load(path)
