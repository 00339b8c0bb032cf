"""The compiled workflow, checked with an independent model of Argo Workflows (hera's),
and the CI workflows with actionlint."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hera.workflows.models import Workflow
from pydantic import ValidationError

from buildtool.gate import compiler

from ..helpers import write_lock

REPO = Path(__file__).resolve().parents[2]


def argo_round_trip(data: dict) -> dict:
    """Parse with hera's Argo models and dump again: fields the models do not know are dropped."""
    return Workflow.parse_obj(data).dict(by_alias=True, exclude_none=True)


def test_compiled_workflow_is_a_valid_argo_workflow(project):
    loaded, lock = write_lock(project)
    compiler.compile_pipeline(loaded, loaded.output)
    data = yaml.safe_load(loaded.output.read_text())
    assert argo_round_trip(data) == data  # every field is one Argo defines, with the right shape
    workflow = Workflow.parse_obj(data)
    images = {t.name: t.container.image for t in workflow.spec.templates if t.container}
    assert images == {step.replace("_", "-"): ref for step, ref in lock.steps.items()}
    dag = next(t for t in workflow.spec.templates if t.name == workflow.spec.entrypoint).dag
    assert [t.name for t in dag.tasks] == ["download-training-dataset", "training", "upload-model"]


def test_the_model_rejects_a_malformed_workflow(project):
    loaded, _ = write_lock(project)
    compiler.compile_pipeline(loaded, loaded.output)
    data = yaml.safe_load(loaded.output.read_text())
    data["spec"]["templates"][0]["container"] = "not a container"
    with pytest.raises(ValidationError, match="container"):
        Workflow.parse_obj(data)
    data = yaml.safe_load(loaded.output.read_text())
    data["spec"]["templates"][0]["container"]["imagePullPolicy_typo"] = "Always"
    assert argo_round_trip(data) != data


def test_github_workflows_pass_actionlint():
    actionlint = shutil.which("actionlint", path=str(Path(sys.executable).parent)) or shutil.which("actionlint")
    assert actionlint, "actionlint is installed with the test extras (pip install -e '.[test]')"
    files = sorted(str(p) for p in (REPO / ".github" / "workflows").glob("*.yml"))
    assert len(files) == 2
    result = subprocess.run([actionlint, "-no-color", *files], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
