"""`verify` is a complete gate: every place an Argo workflow can name an image is read, and what cannot
be read fails closed (exit 10, naming the template and field).

Each row edits the compiled pipeline.yaml of a freshly locked project (so the edit is what verify
reads) and runs `verify --offline`; the workflow and the map stay byte-identical.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import Guard, assert_refused, run_in_process, run_subprocess

MINER = "evil.example.com/miner:latest"
PINNED_MINER = "evil.example.com/miner@sha256:" + "e" * 64
VERIFY_CODE = 10
Workflow = dict[str, Any]


def template(workflow: Workflow, name: str) -> dict[str, Any]:
    return next(t for t in workflow["spec"]["templates"] if t["name"] == name)


def add_template(workflow: Workflow, body: dict[str, Any]) -> None:
    workflow["spec"]["templates"].append(body)


def pod(image: str) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "x"},
            "spec": {"containers": [{"name": "c", "image": image}]},
        }
    )


def patch(image: str) -> dict[str, Any]:
    return {"containers": [{"name": "main", "image": image}]}


def sidecar(w: Workflow) -> None:
    template(w, "training")["sidecars"] = [{"name": "miner", "image": MINER}]


def pinned_sidecar(w: Workflow) -> None:
    template(w, "training")["sidecars"] = [{"name": "miner", "image": PINNED_MINER}]


def init_container(w: Workflow) -> None:
    template(w, "training")["initContainers"] = [{"name": "miner", "image": MINER}]


def script_template(w: Workflow) -> None:
    add_template(w, {"name": "miner", "script": {"image": MINER, "source": "mine()", "command": ["python"]}})


def script_instead_of_container(w: Workflow) -> None:
    t = template(w, "training")
    t["script"] = {**t.pop("container"), "image": MINER, "source": "print(1)"}


def resource_manifest(w: Workflow) -> None:
    add_template(w, {"name": "miner", "resource": {"action": "create", "manifest": pod(MINER)}})


def resource_manifest_json(w: Workflow) -> None:
    manifest = json.dumps(
        {
            "kind": "Deployment",
            "spec": {"template": {"spec": {"initContainers": [{"name": "c", "image": PINNED_MINER}]}}},
        }
    )
    add_template(w, {"name": "miner", "resource": {"action": "apply", "manifest": manifest}})


def resource_unparsable(w: Workflow) -> None:
    add_template(w, {"name": "miner", "resource": {"action": "create", "manifest": "kind: Pod\nspec: [unclosed"}})


def resource_manifest_from(w: Workflow) -> None:
    add_template(w, {"name": "miner", "resource": {"action": "create", "manifestFrom": {"artifact": {"name": "m"}}}})


def template_patch_yaml(w: Workflow) -> None:
    template(w, "training")["podSpecPatch"] = yaml.safe_dump(patch(MINER))


def template_patch_json(w: Workflow) -> None:
    template(w, "upload-model")["podSpecPatch"] = json.dumps(patch(MINER))


def workflow_patch(w: Workflow) -> None:
    w["spec"]["podSpecPatch"] = json.dumps(patch(PINNED_MINER))


def patch_field_case(w: Workflow) -> None:
    """Go's encoding/json matches `Image` to `image`: the cluster would run it."""
    template(w, "training")["podSpecPatch"] = json.dumps({"containers": [{"name": "main", "Image": MINER}]})


def image_in_annotations(w: Workflow) -> None:
    template(w, "training")["metadata"]["annotations"]["x"] = {"image": MINER}


def patch_unparsable(w: Workflow) -> None:
    template(w, "training")["podSpecPatch"] = '{"containers": [{"name": "main", "image": '


def patch_not_a_string(w: Workflow) -> None:
    template(w, "training")["podSpecPatch"] = patch(MINER)


def patch_in_patch(w: Workflow) -> None:
    template(w, "training")["podSpecPatch"] = yaml.safe_dump({"podSpecPatch": yaml.safe_dump(patch(MINER))})


def template_defaults(w: Workflow) -> None:
    w["spec"]["templateDefaults"] = {"container": {"image": MINER}}


def template_defaults_sidecar(w: Workflow) -> None:
    w["spec"]["templateDefaults"] = {"sidecars": [{"name": "s", "image": PINNED_MINER}]}


def container_set(w: Workflow) -> None:
    add_template(w, {"name": "miner", "containerSet": {"containers": [{"name": "a", "image": MINER}]}})


def container_set_in_step(w: Workflow) -> None:
    t = template(w, "training")
    t["containerSet"] = {
        "containers": [{"name": "main", "image": t["container"]["image"]}, {"name": "b", "image": PINNED_MINER}]
    }


def templates_abc(w: Workflow) -> None:
    w["spec"]["templates"] = "abc"


def template_a_string(w: Workflow) -> None:
    w["spec"]["templates"][0] = "abc"


def spec_a_list(w: Workflow) -> None:
    w["spec"] = ["abc"]


def container_a_string(w: Workflow) -> None:
    template(w, "training")["container"] = "abc"


def image_a_list(w: Workflow) -> None:
    t = template(w, "training")
    t["container"]["image"] = [t["container"]["image"]]


def container_without_image(w: Workflow) -> None:
    del template(w, "training")["container"]["image"]


def sidecars_a_mapping(w: Workflow) -> None:
    template(w, "training")["sidecars"] = {"name": "miner", "image": MINER}


def unpinned_step(w: Workflow) -> None:
    template(w, "training")["container"]["image"] = "127.0.0.1:5000/t/training:latest"


def other_steps_image(w: Workflow) -> None:
    template(w, "training")["container"]["image"] = template(w, "upload-model")["container"]["image"]


def annotation_differs(w: Workflow) -> None:
    metadata = template(w, "training")["metadata"]
    spec = json.loads(metadata["annotations"]["pipelines.kubeflow.org/component_spec"])
    spec["implementation"]["container"]["image"] = PINNED_MINER
    metadata["annotations"]["pipelines.kubeflow.org/component_spec"] = json.dumps(spec)


def annotation_unreadable(w: Workflow) -> None:
    template(w, "training")["metadata"]["annotations"]["pipelines.kubeflow.org/component_spec"] = "[" * 100_000


def template_ref(w: Workflow) -> None:
    dag = template(w, "pipeline")["dag"]["tasks"][0]
    dag["templateRef"] = {"name": "elsewhere", "template": "miner"}


def inline_template(w: Workflow) -> None:
    """Argo 3.2+ runs a template written inline in a DAG task."""
    template(w, "pipeline")["dag"]["tasks"][0]["inline"] = {"container": {"image": MINER}}


def workflow_template_ref(w: Workflow) -> None:
    w["spec"]["workflowTemplateRef"] = {"name": "elsewhere"}


def newline_in_image(w: Workflow) -> None:
    template(w, "training")["container"]["image"] = "evil.example.com/x:1\nbuildtool: ok"


def with_parameters(w: Workflow, **values: str) -> None:
    w["spec"].setdefault("arguments", {})["parameters"] = [{"name": k, "value": v} for k, v in values.items()]


def patch_parameter_key(w: Workflow) -> None:
    """Argo substitutes parameters in podSpecPatch before applying it: k=image, img=the miner."""
    with_parameters(w, k="image", img=MINER)
    template(w, "training")["podSpecPatch"] = json.dumps(
        {"containers": [{"name": "main", "{{workflow.parameters.k}}": "{{workflow.parameters.img}}"}]}
    )


def patch_parameter_key_only(w: Workflow) -> None:
    with_parameters(w, k="image")
    template(w, "training")["podSpecPatch"] = json.dumps(
        {"containers": [{"name": "main", "{{workflow.parameters.k}}": PINNED_MINER}]}
    )


def patch_parameter_image(w: Workflow) -> None:
    template(w, "training")["podSpecPatch"] = json.dumps(
        {"containers": [{"name": "main", "image": "{{workflow.parameters.img}}"}]}
    )


def patch_parameter_containers(w: Workflow) -> None:
    """A whole container list as one parameter."""
    template(w, "training")["podSpecPatch"] = yaml.safe_dump({"initContainers": "{{inputs.parameters.c}}"})


def patch_parameter_list_item(w: Workflow) -> None:
    template(w, "training")["podSpecPatch"] = json.dumps({"containers": ["{{workflow.parameters.c}}"]})


def patch_parameter_whole(w: Workflow) -> None:
    template(w, "training")["podSpecPatch"] = "'{{workflow.parameters.patch}}'"


def workflow_patch_parameter_key(w: Workflow) -> None:
    w["spec"]["podSpecPatch"] = json.dumps({"sidecars": [{"name": "s", "{{workflow.parameters.k}}": "x"}]})


def manifest_parameter_key(w: Workflow) -> None:
    add_template(
        w,
        {
            "name": "miner",
            "resource": {
                "action": "create",
                "manifest": yaml.safe_dump(
                    {"kind": "Pod", "spec": {"containers": [{"name": "m", "{{inputs.parameters.k}}": "x"}]}}
                ),
            },
        },
    )


def patch_upper_case_key(w: Workflow) -> None:
    template(w, "training")["podSpecPatch"] = json.dumps({"containers": [{"name": "main", "IMAGE": MINER}]})


def patch_long_s_sidecars(w: Workflow) -> None:
    """`\u017fidecars` is `sidecars` to Go's JSON decoding (the long s folds to s)."""
    template(w, "training")["podSpecPatch"] = json.dumps({"\u017fidecars": [{"name": "s", "image": MINER}]})


def patch_long_s_patch(w: Workflow) -> None:
    """A podSpecPatch inside a resource manifest, its key spelled `pod\u017fpecPatch`: still read."""
    add_template(
        w,
        {
            "name": "miner",
            "resource": {
                "action": "create",
                "manifest": yaml.safe_dump(
                    {"kind": "Workflow", "spec": {"pod\u017fpecPatch": json.dumps(patch(MINER))}}
                ),
            },
        },
    )


def patch_kelvin_template_ref(w: Workflow) -> None:
    """The Kelvin sign folds to k under Go's rule: `wor\u212aflowTemplateRef` is workflowTemplateRef to the cluster."""
    w["spec"]["wor\u212aflowTemplateRef"] = {"name": "elsewhere"}


def not_a_workflow(w: Workflow) -> None:
    w["kind"] = "Pod"


def step_missing(w: Workflow) -> None:
    w["spec"]["templates"] = [t for t in w["spec"]["templates"] if t["name"] != "upload-model"]


DATA_ROWS: list[tuple[str, Callable[[Workflow], None], str]] = [
    ("sidecar", sidecar, f"template training: sidecars[0].image: {MINER} is not pinned"),
    ("sidecar-pinned-foreign", pinned_sidecar, f"template training: sidecars[0].image: {PINNED_MINER} differs"),
    ("init-container", init_container, f"template training: initContainers[0].image: {MINER}"),
    ("script-template", script_template, f"template miner: script.image: {MINER}"),
    ("script-in-step", script_instead_of_container, f"template training: script.image: {MINER}"),
    ("resource-manifest", resource_manifest, f"template miner: resource.manifest.spec.containers[0].image: {MINER}"),
    (
        "resource-manifest-json",
        resource_manifest_json,
        "template miner: resource.manifest.spec.template.spec.initContainers[0].image",
    ),
    ("resource-manifest-unparsable", resource_unparsable, "template miner: resource.manifest: cannot be read"),
    ("resource-manifest-from", resource_manifest_from, "template miner: resource.manifestFrom: reads its manifest"),
    (
        "podspecpatch-template-yaml",
        template_patch_yaml,
        f"template training: podSpecPatch.containers[0].image: {MINER}",
    ),
    (
        "podspecpatch-template-json",
        template_patch_json,
        f"template upload-model: podSpecPatch.containers[0].image: {MINER}",
    ),
    (
        "podspecpatch-workflow",
        workflow_patch,
        f"spec.podSpecPatch.containers[0].image: {PINNED_MINER} applies to every",
    ),
    ("podspecpatch-field-case", patch_field_case, f"template training: podSpecPatch.containers[0].Image: {MINER}"),
    ("image-in-annotations", image_in_annotations, f"template training: metadata.annotations.x.image: {MINER}"),
    ("podspecpatch-unparsable", patch_unparsable, "template training: podSpecPatch: cannot be read"),
    (
        "podspecpatch-not-a-string",
        patch_not_a_string,
        "template training: podSpecPatch: expected a YAML or JSON string",
    ),
    ("podspecpatch-in-podspecpatch", patch_in_patch, "podSpecPatch.podSpecPatch: a document embedded in an embedded"),
    ("template-defaults", template_defaults, f"spec.templateDefaults.container.image: {MINER}"),
    ("template-defaults-sidecar", template_defaults_sidecar, "spec.templateDefaults.sidecars[0].image"),
    ("container-set", container_set, f"template miner: containerSet.containers[0].image: {MINER}"),
    ("container-set-in-step", container_set_in_step, "template training: containerSet.containers[1].image"),
    ("templates-abc", templates_abc, "spec.templates: expected a list of templates, got str"),
    ("template-a-string", template_a_string, "spec.templates[0]: expected a mapping with a name"),
    ("spec-a-list", spec_a_list, "spec: expected a mapping, got list"),
    ("container-a-string", container_a_string, "template training: container.image: container holds no image"),
    ("image-a-list", image_a_list, "template training: container.image: ['127.0.0.1:5000/t/training"),
    ("container-without-image", container_without_image, "template training: container.image: container holds no"),
    ("sidecars-a-mapping", sidecars_a_mapping, "template training: sidecars: expected a list of containers"),
    ("step-unpinned", unpinned_step, "template training: container.image: 127.0.0.1:5000/t/training:latest is not"),
    ("step-runs-another-steps-image", other_steps_image, "template training: container.image: 127.0.0.1:5000/t/upload"),
    ("component-spec-differs", annotation_differs, "template training: pipelines.kubeflow.org/component_spec annot"),
    ("component-spec-unreadable", annotation_unreadable, "component_spec annotation: cannot be read"),
    ("template-ref", template_ref, "template pipeline: dag.tasks[0].templateRef: runs a template of another"),
    ("dag-inline-template", inline_template, f"template pipeline: dag.tasks[0].inline.container.image: {MINER}"),
    ("workflow-template-ref", workflow_template_ref, "spec.workflowTemplateRef: runs another WorkflowTemplate"),
    ("newline-in-image", newline_in_image, "evil.example.com/x:1\\nbuildtool: ok"),
    (
        "podspecpatch-parameter-key-and-image",
        patch_parameter_key,
        "podSpecPatch.containers[0].{{workflow.parameters.k}}: a parameter in a key",
    ),
    (
        "podspecpatch-parameter-key",
        patch_parameter_key_only,
        "podSpecPatch.containers[0].{{workflow.parameters.k}}: a parameter in a key",
    ),
    (
        "podspecpatch-parameter-image",
        patch_parameter_image,
        "podSpecPatch.containers[0].image: {{workflow.parameters.img}} is a parameter under an image-bearing field",
    ),
    (
        "podspecpatch-parameter-containers",
        patch_parameter_containers,
        "podSpecPatch.initContainers: {{inputs.parameters.c}} is a parameter under an image-bearing field",
    ),
    (
        "podspecpatch-parameter-list-item",
        patch_parameter_list_item,
        "podSpecPatch.containers[0]: {{workflow.parameters.c}} is a parameter",
    ),
    ("podspecpatch-parameter-whole", patch_parameter_whole, "podSpecPatch: the whole document is a parameter"),
    (
        "workflow-podspecpatch-parameter-key",
        workflow_patch_parameter_key,
        "spec.podSpecPatch.sidecars[0].{{workflow.parameters.k}}: a parameter in a key",
    ),
    (
        "manifest-parameter-key",
        manifest_parameter_key,
        "resource.manifest.spec.containers[0].{{inputs.parameters.k}}: a parameter in a key",
    ),
    ("podspecpatch-field-upper-case", patch_upper_case_key, f"podSpecPatch.containers[0].IMAGE: {MINER}"),
    (
        "podspecpatch-long-s-sidecars",
        patch_long_s_sidecars,
        f"podSpecPatch.\u017fidecars[0].image: {MINER} is not pinned",
    ),
    (
        "manifest-long-s-podspecpatch",
        patch_long_s_patch,
        "resource.manifest.spec.pod\u017fpecPatch: a document embedded in an embedded document",
    ),
    (
        "kelvin-workflow-template-ref",
        patch_kelvin_template_ref,
        "spec.wor\u212aflowTemplateRef: runs another WorkflowTemplate",
    ),
    ("not-a-workflow", not_a_workflow, "not an Argo Workflow (kind: Workflow)"),
    ("step-without-template", step_missing, "step upload_model: in the image map but no template of the workflow"),
]


@pytest.mark.parametrize("edit, fragment", [pytest.param(e, f, id=i) for i, e, f in DATA_ROWS])
def test_hostile_workflow_is_refused(locked_project: Path, edit: Callable[[Workflow], None], fragment: str) -> None:
    path = locked_project / "pipeline.yaml"
    workflow = yaml.safe_load(path.read_text())
    edit(workflow)
    path.write_text(yaml.safe_dump(workflow, sort_keys=False))
    guard = Guard(locked_project)
    outcome = run_in_process(locked_project, "verify", "--offline")
    line = assert_refused(outcome, VERIFY_CODE, fragment)
    assert "pipeline.yaml" in line
    assert outcome.seconds < 10
    guard.check()


def duplicate_image_key(data: bytes) -> bytes:
    """Two `image:` keys in one container: whichever the cluster keeps, verify must not pick one."""
    line = next(line for line in data.splitlines() if line.strip().startswith(b"image: 127.0.0.1:5000/t/training"))
    indent = line[: len(line) - len(line.lstrip())]
    return data.replace(line, line + b"\n" + indent + b"image: " + MINER.encode(), 1)


def alias_in_args(text: str) -> str:
    """Nested aliases used in a container's args: a few KB that expand to 10^9 strings."""
    lines = ["  x-bomb:", "    l0: &l0 [" + ", ".join(["lol"] * 10) + "]"]
    lines += [f"    l{n}: &l{n} [" + ", ".join([f"*l{n - 1}"] * 10) + "]" for n in range(1, 10)]
    text = text.replace("metadata:\n", "metadata:\n" + "\n".join(lines) + "\n", 1)
    assert "      args: [" in text
    return text.replace("      args: [", "      args: [*l9, ", 1)


BYTE_ROWS: list[tuple[str, Callable[[bytes], bytes], str]] = [
    ("duplicate-image-key", duplicate_image_key, "duplicate key image"),
    ("byte-0xff", lambda d: d.replace(b"kind: Workflow", b"kind: Workflow\xff", 1), "not UTF-8 (byte 0xff"),
    ("alias-anchor", lambda d: d.replace(b"spec:\n", b"spec: &s\n", 1), "anchor &s"),
    ("nul-byte", lambda d: d.replace(b"kind: Workflow", b"kind: Work\x00flow", 1), "control characters"),
]


@pytest.mark.parametrize("edit, fragment", [pytest.param(e, f, id=i) for i, e, f in BYTE_ROWS])
def test_unreadable_workflow_is_refused(locked_project: Path, edit: Callable[[bytes], bytes], fragment: str) -> None:
    path = locked_project / "pipeline.yaml"
    path.write_bytes(edit(path.read_bytes()))
    guard = Guard(locked_project)
    line = assert_refused(run_in_process(locked_project, "verify", "--offline"), VERIFY_CODE, fragment)
    assert "pipeline.yaml" in line
    guard.check()


def many_templates(path: Path) -> None:
    """10,000 small templates (under the size cap): the reader must not walk them for minutes."""
    workflow = yaml.safe_load(path.read_text())
    workflow["spec"]["templates"] = [{"name": f"t{n}", "container": {"image": "x"}} for n in range(10_000)]
    path.write_text(yaml.safe_dump(workflow, sort_keys=False, default_flow_style=True, width=10_000))


def oversize(path: Path) -> None:
    path.write_text(path.read_text() + "# " + "x" * 2_000_000 + "\n")


def deep(path: Path) -> None:
    path.write_text(path.read_text().replace("spec:\n", "x-deep: " + "[" * 200_000 + "\nspec:\n", 1))


def args_alias_bomb(path: Path) -> None:
    path.write_text(alias_in_args(path.read_text()))


BOMB_ROWS: list[tuple[str, Callable[[Path], None], str]] = [
    ("10000-templates", many_templates, "spec.templates: 10000 templates, more than the 1000"),
    ("workflow-2MB", oversize, "bytes, more than the 1000000 accepted"),
    ("nested-200k-deep", deep, "nesting"),
    ("alias-bomb-in-args", args_alias_bomb, "anchors and aliases are not accepted"),
]


@pytest.mark.parametrize("edit, fragment", [pytest.param(e, f, id=i) for i, e, f in BOMB_ROWS])
def test_workflow_bombs_fail_fast_in_bounded_memory(
    locked_project: Path, edit: Callable[[Path], None], fragment: str
) -> None:
    edit(locked_project / "pipeline.yaml")
    guard = Guard(locked_project)
    outcome = run_subprocess(locked_project, "verify", "--offline", timeout=60)
    assert_refused(outcome, VERIFY_CODE, fragment)
    assert outcome.seconds < 10, f"took {outcome.seconds:.1f} s"
    assert outcome.max_rss_mb is not None and outcome.max_rss_mb < 200, f"peak RSS {outcome.max_rss_mb:.0f} MB"
    guard.check()


def test_the_compiled_workflow_passes(locked_project: Path) -> None:
    """The control row: the untouched workflow verifies, so every refusal above is the edit's doing."""
    outcome = run_in_process(locked_project, "verify", "--offline")
    assert outcome.code == 0, outcome.err
    assert "every image is pinned" in outcome.out
