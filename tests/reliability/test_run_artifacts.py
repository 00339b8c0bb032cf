"""Input artifacts of one task taken from one output: each is mounted at its own path, read-only.

A workflow may name the same upstream output more than once (kfp writes it when a component takes one
result under two inputs); a run that mounts only one of them would hand the step a missing file.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from buildtool.dev import run_exec, run_workflow
from buildtool.engine import Bind, ContainerResult

from ..conftest import write_project
from .run_fixtures import RecordingEngine, compile_project

ARGUMENTS = {
    "training_task_uid": "task-1",
    "training_dataset_uid": "ds-1",
    "model_uid": "model-1",
    "learning_rate": "0.01",
    "host": "127.0.0.1",
    "port": "8080",
    "access_key": "tester",
    "secret_key": "s",
}
DOWNLOAD, TRAINING = "download-training-dataset", "training"


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    workflow, _, _ = compile_project(write_project(tmp_path_factory.mktemp("project")))
    return workflow


@pytest.mark.parametrize("extra", [["again"], ["again", "thrice"]], ids=["two-inputs", "three-inputs"])
def test_every_input_taken_from_one_output_is_mounted(
    compiled: dict[str, Any], tmp_path: Path, extra: list[str]
) -> None:
    workflow = copy.deepcopy(compiled)
    training = next(t for t in workflow["spec"]["templates"] if t["name"] == TRAINING)
    dag = next(t for t in workflow["spec"]["templates"] if t["name"] == workflow["spec"]["entrypoint"])["dag"]
    task = next(t for t in dag["tasks"] if t["name"] == TRAINING)
    for name in extra:
        training["inputs"]["artifacts"].append({"name": name, "path": f"/tmp/inputs/{name}/data"})
        task["arguments"]["artifacts"].append(
            {"name": name, "from": f"{{{{tasks.{DOWNLOAD}.outputs.artifacts.{DOWNLOAD}-output}}}}"}
        )
    engine = RecordingEngine([ContainerResult(0, "")] * 3)
    plan = run_workflow.plan_run(workflow, ARGUMENTS)
    outcome = run_exec.execute_run(plan, engine, tmp_path / "work", lambda who, what: None)
    assert outcome.failure is None
    source = str((tmp_path / "work" / DOWNLOAD / f"{DOWNLOAD}-output" / "data").resolve())
    reads = [b for b in engine.calls[1][2]["binds"] if b.read_only]
    assert reads == [Bind(source, f"/tmp/inputs/{name}/data", True) for name in ["input", *extra]]
