"""The corpus of ordinary kfp 1.8 pipelines (tests/corpus) as a buildtool project of its own, end to end.

A fresh folder holds a copy of the corpus package (`corpus.steps` its steps module, each pipeline module a
factory `make_pipeline(img_name_map)`) and a `pyproject.toml` with only `[project]`. `buildtool init` adds
`[tool.buildtool]` and an image per step on the bootstrapped base; `buildtool build --push` builds them once
for the module. Then, for each pipeline, a copy of that project naming it as `pipeline` goes through
`build --push` (everything reused), `compile`, `check`, `verify` and `run`, all through the CLI, on the real
engine and registry with the real kfp compiler. `run`'s outputs must equal the step functions' own results,
and LocalClient's (kfp 1.8's own runner, on the same pinned images) for every output LocalClient produces.
"""

from __future__ import annotations

import importlib
import re
import shutil
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
import yaml

from buildtool import cli
from buildtool.gate import verify

from .conftest import BASE_IMAGE
from .test_run_corpus import local_client, written

CORPUS = Path(__file__).resolve().parents[1] / "corpus"
PIPELINES = ["file_outputs", "named_tuple", "condition", "loop_param", "loop_items", "exit_handler"]


def buildtool(project: Path, *argv: str) -> int:
    return cli.main(["--config", str(project / "pyproject.toml"), *argv])


@pytest.fixture(scope="module")
def corpus_project(
    tmp_path_factory: pytest.TempPathFactory, registry: str, engine_client: docker.DockerClient
) -> Iterator[Path]:
    """The project, initialised and built once; its images are removed from the engine afterwards."""
    project = tmp_path_factory.mktemp("corpus-project")
    shutil.copytree(CORPUS, project / "corpus", ignore=shutil.ignore_patterns("__pycache__"))
    repository = f"corpus-{uuid.uuid4().hex[:10]}"
    (project / "pyproject.toml").write_text(f'[project]\nname = "{repository}"\nversion = "0.1"\n')
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("BUILDTOOL_BASE_IMAGE", BASE_IMAGE)  # no public registry here: the bootstrapped base
        patch.setenv("BUILDTOOL_REGISTRY", registry)
        try:
            assert buildtool(project, "init", "corpus.steps", "--pipeline", "corpus.file_outputs:make_pipeline") == 0
            assert buildtool(project, "build", "--push") == 0
            yield project
        finally:
            for image in engine_client.images.list():
                for tag in image.tags:
                    if f"/{repository}/" in tag:
                        engine_client.images.remove(tag, force=True)


@pytest.fixture(autouse=True)
def _project_modules_unloaded() -> Iterator[None]:
    """Each copy of the project has its own `corpus` package: no test sees another's modules."""
    yield
    for name in [n for n in sys.modules if n.split(".")[0] == "corpus"]:
        del sys.modules[name]


def steps_of(module: Any) -> set[str]:
    """The step functions (of corpus.steps) that the corpus module's pipeline uses."""
    from tests.corpus import steps

    return {
        name
        for name, value in vars(module).items()
        if callable(value) and getattr(value, "__module__", None) == steps.__name__
    }


def pipeline_project(corpus_project: Path, module: Any, where: Path) -> Path:
    """A copy of the built project whose `pipeline` is `module`'s factory, keeping the images of its steps only
    (verify refuses a mapped step that no template runs)."""
    project = where / "project"
    shutil.copytree(corpus_project, project)
    config = project / "pyproject.toml"
    name = module.__name__.rpartition(".")[2]
    text, count = re.subn(
        r'^pipeline = "corpus\.file_outputs:make_pipeline"$',
        f'pipeline = "corpus.{name}:make_pipeline"',
        config.read_text(),
        flags=re.M,
    )
    assert count == 1
    table = r'^\[tool\.buildtool\.images\.[\w-]+\]\ncontext = "[^"\n]+"\nstep = "{}"\n\n?'
    tables = re.findall(table.format(r"(\w+)"), text, flags=re.M)
    assert set(tables) == steps_of(importlib.import_module("tests.corpus.steps"))  # init made one per function
    for step in set(tables) - steps_of(module):
        text = re.sub(table.format(step), "", text, flags=re.M)
    config.write_text(text)
    return project


@pytest.mark.parametrize("name", PIPELINES)
def test_a_corpus_pipeline_builds_compiles_verifies_and_runs_as_kfp_runs_it(
    name: str, corpus_project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    module: Any = importlib.import_module(f"tests.corpus.{name}")
    project = pipeline_project(corpus_project, module, tmp_path)
    monkeypatch.setenv("BUILDTOOL_BASE_IMAGE", BASE_IMAGE)
    capsys.readouterr()
    assert buildtool(project, "build", "--push") == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert " build " not in out and "reuse" in out, out  # built once for the module: every image reused
    for command in (["compile"], ["check"], ["verify"]):
        assert buildtool(project, *command) == 0, (command, capsys.readouterr().err)
    out = capsys.readouterr().out
    assert "is what compile makes from them" in out and "exists in the registry" in out, out
    lock = yaml.safe_load((project / "image_map.yaml").read_text())
    workflow = yaml.safe_load((project / "pipeline.yaml").read_text())
    used = verify.template_steps(workflow, lock["steps"])
    assert used and set(used.values()) <= set(lock["steps"])
    params = [item for key, value in module.ARGUMENTS.items() for item in ("-p", f"{key}={value}")]
    workdir = tmp_path / "run"
    assert buildtool(project, "run", *params, "--workdir", str(workdir)) == 0, capsys.readouterr().err
    assert "the run succeeded" in capsys.readouterr().out
    ours = {key: written(workdir, *key) for key in module.expected(module.ARGUMENTS)}
    assert ours == module.expected(module.ARGUMENTS)
    if module.LOCAL_CLIENT:  # loop_items: LocalClient cannot run a ParallelFor over a static list
        theirs = local_client(module, lock["steps"], tmp_path / "local-client")
        assert theirs and {key: written(workdir, *key) for key in theirs} == theirs
