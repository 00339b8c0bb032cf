"""The paths `.dockerignore` keeps, remembered per tree: always docker-py's answer, asked again whenever the
tree, the patterns or the Dockerfile's name change, or the remembered file cannot be trusted."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from buildtool import engine
from buildtool.inputs import kept_paths
from buildtool.inputs.context import read_dockerignore, scan

PATTERNS = "*.secret\ndata/\n!data/keep.txt\n**/__pycache__\n"


def tree(root: Path) -> Path:
    for path, text in {
        "Dockerfile": "FROM x\n",
        "other.Dockerfile": "FROM y\n",
        "key.secret": "no\n",
        "src/app.py": "print(1)\n",
        "src/__pycache__/app.pyc": "x",
        "data/big.bin": "x",
        "data/keep.txt": "kept\n",
    }.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)
    (root / ".dockerignore").write_text(PATTERNS)
    (root / "link").symlink_to(root / "src")
    return root


@pytest.fixture
def asked(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Each time docker-py's matcher is asked: the Dockerfile it was asked for."""
    calls: list[str] = []
    real = engine.context_paths

    def counting(root: Path, excludes: list[str], dockerfile: str) -> set[str]:
        calls.append(dockerfile)
        return real(root, excludes, dockerfile)

    monkeypatch.setattr(engine, "context_paths", counting)
    return calls


def test_the_remembered_answer_is_docker_pys_and_spares_asking_again(tmp_path: Path, asked: list[str]) -> None:
    root, cache = tree(tmp_path / "ctx"), tmp_path / "cache" / kept_paths.FILE_NAME
    excludes = read_dockerignore(root)
    first = kept_paths.kept_paths(root, excludes, "Dockerfile", cache)
    assert "key.secret" not in first and "data/keep.txt" in first and "src/app.py" in first
    assert asked == ["Dockerfile"]
    assert kept_paths.kept_paths(root, excludes, "Dockerfile", cache) == first
    assert asked == ["Dockerfile"]  # the second answer came from the file
    assert os.stat(cache).st_mode & 0o022 == 0


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda root: (root / "src" / "new.py").write_text("x\n"), id="a-new-file"),
        pytest.param(lambda root: (root / "data" / "big.bin").unlink(), id="a-removed-file"),
        pytest.param(lambda root: (root / "src" / "sub").mkdir(), id="a-new-folder"),
        pytest.param(lambda root: ((root / "link").unlink(), (root / "link").mkdir()), id="a-link-now-a-folder"),
        pytest.param(lambda root: (root / ".dockerignore").write_text(PATTERNS + "src/\n"), id="new-patterns"),
    ],
)
def test_a_changed_tree_or_patterns_asks_docker_py_again(tmp_path: Path, asked: list[str], change) -> None:
    root, cache = tree(tmp_path / "ctx"), tmp_path / kept_paths.FILE_NAME
    kept_paths.kept_paths(root, read_dockerignore(root), "Dockerfile", cache)
    change(root)
    excludes = read_dockerignore(root)
    answer = kept_paths.kept_paths(root, excludes, "Dockerfile", cache)
    assert len(asked) == 2
    assert answer == kept_paths.kept_paths(root, excludes, "Dockerfile", None) and len(asked) == 3


def test_another_dockerfile_is_another_answer(tmp_path: Path, asked: list[str]) -> None:
    root, cache = tree(tmp_path / "ctx"), tmp_path / kept_paths.FILE_NAME
    excludes = read_dockerignore(root)
    kept_paths.kept_paths(root, excludes, "Dockerfile", cache)
    kept_paths.kept_paths(root, excludes, "other.Dockerfile", cache)
    assert asked == ["Dockerfile", "other.Dockerfile"]


def _entry(root: Path, paths: list[str]) -> str:
    excludes = read_dockerignore(root)
    key = kept_paths._key(kept_paths._tree(root), excludes, "Dockerfile")
    return json.dumps({"contexts": [[key, paths]]})


# Each row: what the remembered file holds (or is); docker-py is asked again, and its answer is the one used.
HOSTILE = [
    pytest.param(lambda root, cache: cache.write_text("{not json"), id="not-json"),
    pytest.param(lambda root, cache: cache.write_text(json.dumps({"contexts": "x"})), id="not-a-list"),
    pytest.param(lambda root, cache: cache.write_text(_entry(root, ["../../etc/passwd"])), id="a-path-outside"),
    pytest.param(lambda root, cache: cache.write_text(_entry(root, ["nope.txt"])), id="a-path-not-in-the-tree"),
    pytest.param(lambda root, cache: cache.write_text(_entry(root, [7])), id="not-a-path"),  # type: ignore[list-item]
    pytest.param(lambda root, cache: cache.write_text(" " * (kept_paths.MAX_BYTES + 1)), id="too-large"),
    pytest.param(
        lambda root, cache: (cache.write_text(_entry(root, ["Dockerfile"])), cache.chmod(0o666)), id="world-writable"
    ),
    pytest.param(
        lambda root, cache: (
            (root.parent / "elsewhere").write_text(_entry(root, ["Dockerfile"])),
            cache.symlink_to(root.parent / "elsewhere"),
        ),
        id="a-symbolic-link",
    ),
]


@pytest.mark.parametrize("plant", HOSTILE)
def test_a_remembered_file_that_cannot_be_trusted_is_not_used(tmp_path: Path, asked: list[str], plant) -> None:
    root, cache = tree(tmp_path / "ctx"), tmp_path / kept_paths.FILE_NAME
    plant(root, cache)
    answer = kept_paths.kept_paths(root, read_dockerignore(root), "Dockerfile", cache)
    assert asked == ["Dockerfile"]
    assert answer == kept_paths.kept_paths(root, read_dockerignore(root), "Dockerfile", None)
    assert "key.secret" not in answer and "data/keep.txt" in answer


def test_scan_hashes_the_same_files_with_and_without_the_remembered_answer(
    tmp_path: Path, asked: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    root = tree(tmp_path / "ctx")
    first, second = scan(root), scan(root)
    assert first == second and len(asked) == 1
    assert (tmp_path / "cache" / "buildtool" / kept_paths.FILE_NAME).is_file()
    assert {e.path for e in first.entries} == engine.context_paths(root, read_dockerignore(root), "Dockerfile")
