"""`buildtool init` scaffolds a project that loads and checks as written, and overwrites nothing."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from buildtool import cli, config, scaffold
from buildtool.lock import map_lock

STEPS = (
    "import json\n\n\ndef prepare(n: int) -> int:\n    return n\n\n\ndef train_model(x: int) -> float:\n"
    "    return x / 2\n\n\ndef _helper():\n    pass\n"
)
ADDED = "# the lock `buildtool build` holds while it writes image_map.yaml\nimage_map.yaml.lock\n"
PROJECT = '[project]\nname = "My Pipeline"\nversion = "0.1"\n'


def fresh(root: Path) -> Path:
    (root / "mypkg").mkdir()
    (root / "mypkg" / "__init__.py").write_text("")
    (root / "mypkg" / "steps.py").write_text(STEPS)
    path = root / "pyproject.toml"
    path.write_text(PROJECT)
    return path


def test_init_writes_a_configuration_that_loads(tmp_path, capsys):
    project = fresh(tmp_path)
    assert cli.main(["--config", str(project), "init", "mypkg.steps"]) == 0
    assert "added [tool.buildtool]" in capsys.readouterr().out
    loaded = config.load(project)
    assert loaded.steps == {"prepare": "prepare", "train_model": "train-model"}
    assert loaded.repository == "my-pipeline" and loaded.repository_from == "[project].name"
    assert loaded.pipeline == "mypkg.pipeline:make_pipeline" and loaded.steps_module == "mypkg.steps"
    assert project.read_text().startswith(PROJECT)
    for name in ("prepare", "train-model"):
        context = tmp_path / "images" / name
        assert "FROM ${BASE_IMAGE}" in (context / "Dockerfile").read_text()
        assert (context / ".dockerignore").read_text() == "*\n!Dockerfile\n"


def test_init_without_a_project_name_sets_the_repository(tmp_path):
    project = fresh(tmp_path)
    project.write_text("")
    assert (
        cli.main(
            [
                "--config",
                str(project),
                "init",
                "mypkg.steps",
                "--repository",
                "team/pipe",
                "--pipeline",
                "mypkg.flow:build",
            ]
        )
        == 0
    )
    loaded = config.load(project)
    assert (loaded.repository, loaded.repository_from, loaded.pipeline) == ("team/pipe", "", "mypkg.flow:build")


def _table(root: Path) -> None:
    (root / "pyproject.toml").write_text(PROJECT + '\n[tool.buildtool]\nrepository = "x"\n')


def _dockerfile(root: Path) -> None:
    (root / "images" / "train-model").mkdir(parents=True)
    (root / "images" / "train-model" / "Dockerfile").write_text("FROM mine\n")


def _dangling_link(root: Path) -> None:
    (root / "images" / "prepare").mkdir(parents=True)
    (root / "images" / "prepare" / ".dockerignore").symlink_to(root / "nowhere")


def _no_module(root: Path) -> None:
    (root / "mypkg" / "steps.py").unlink()


def _syntax(root: Path) -> None:
    (root / "mypkg" / "steps.py").write_text("def prepare(:\n")


def _no_function(root: Path) -> None:
    (root / "mypkg" / "steps.py").write_text("X = 1\n\ndef _private():\n    pass\n")


def _same_image(root: Path) -> None:
    (root / "mypkg" / "steps.py").write_text("def a_b():\n    pass\n\n\ndef a__b():\n    pass\n")


def _bad_toml(root: Path) -> None:
    (root / "pyproject.toml").write_text("[project\n")


def _gitignore_folder(root: Path) -> None:
    (root / ".gitignore").mkdir()


def _gitignore_link(root: Path) -> None:
    (root / "elsewhere").write_text("*.pyc\n")
    (root / ".gitignore").symlink_to(root / "elsewhere")


def _gitignore_not_text(root: Path) -> None:
    (root / ".gitignore").write_bytes(b"\xff\xfe*.pyc\n")


@pytest.mark.parametrize(
    ("edit", "fragment"),
    [
        (_table, "already has [tool.buildtool]; init writes nothing over it"),
        (_dockerfile, "images/train-model/Dockerfile already exist(s); init overwrites nothing"),
        (_dangling_link, "images/prepare/.dockerignore already exist(s)"),
        (_no_module, "--steps-module mypkg.steps: no mypkg/steps.py"),
        (_syntax, "steps.py: cannot be parsed (SyntaxError"),
        (_no_function, "defines no public function"),
        (_same_image, "functions a_b and a__b would share the image name 'a-b'"),
        (_bad_toml, "not valid TOML"),
        (_gitignore_folder, ".gitignore: not a plain file; init adds image_map.yaml.lock to it"),
        (_gitignore_link, ".gitignore: not a plain file; init adds image_map.yaml.lock to it"),
        (_gitignore_not_text, ".gitignore: cannot be read (UnicodeDecodeError)"),
    ],
    ids=lambda v: getattr(v, "__name__", "")[1:] if callable(v) else "",
)
def test_init_refuses_and_writes_nothing(tmp_path, capsys, edit: Callable[[Path], None], fragment: str):
    project = fresh(tmp_path)
    edit(tmp_path)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert cli.main(["--config", str(project), "init", "mypkg.steps"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("buildtool: error: ") and err.count("\n") == 1 and fragment in err
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before
    assert not (tmp_path / "images" / "prepare" / "Dockerfile").exists()


@pytest.mark.parametrize(
    ("before", "after"),
    [
        pytest.param(None, ADDED, id="none"),
        pytest.param("", ADDED, id="empty"),
        pytest.param(
            ".venv/\n*.pyc",
            ".venv/\n*.pyc\n" + ADDED,
            id="extended-without-final-newline",
        ),
        pytest.param(
            "*.lock\n!image_map.yaml.lock\n",
            "*.lock\n!image_map.yaml.lock\n" + ADDED,
            id="negated-then-added",
        ),
        pytest.param("image_map.yaml.lock\n", None, id="listed"),
        pytest.param("/image_map.yaml.lock\n", None, id="listed-at-the-root"),
        pytest.param("# locks\n*.lock\n", None, id="a-glob-covers-it"),
    ],
)
def test_init_has_git_ignore_the_maps_lock_file(tmp_path, capsys, before: str | None, after: str | None):
    project = fresh(tmp_path)
    ignore = tmp_path / ".gitignore"
    if before is not None:
        ignore.write_text(before)
    assert cli.main(["--config", str(project), "init", "mypkg.steps"]) == 0
    out = capsys.readouterr().out
    if after is None:
        assert ignore.read_text() == before and ".gitignore" not in out
    else:
        assert ignore.read_text() == after
        assert (f"created {ignore}" if before is None else f"added image_map.yaml.lock to {ignore}") in out
    assert scaffold.ignores(ignore.read_text(), scaffold.MAP_LOCK)
    # git itself agrees: the lock file a build leaves beside the map is never committed.
    if shutil.which("git"):
        subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
        (tmp_path / "image_map.yaml.lock").write_text("")
        done = subprocess.run(["git", "-C", str(tmp_path), "check-ignore", "-q", "image_map.yaml.lock"], check=False)
        assert done.returncode == 0


def test_the_ignored_file_is_the_one_a_build_locks(tmp_path):
    project = fresh(tmp_path)
    assert cli.main(["--config", str(project), "init", "mypkg.steps"]) == 0
    with map_lock.exclusive(config.load(project).image_map):
        pass
    locks = [path.name for path in tmp_path.iterdir() if path.name.endswith(".lock")]
    assert locks == [scaffold.MAP_LOCK] == ["image_map.yaml.lock"]
    assert scaffold.ignores((tmp_path / ".gitignore").read_text(), locks[0])
