"""lock/freshness.py: what the compile-inputs digest covers, where a workflow first differs from a fresh compile,
and how a stale or unreadable workflow is refused (the file or upload named, and the fix)."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import pytest
import yaml

from buildtool import config
from buildtool.errors import StalePipelineError
from buildtool.gate import kfp_compile
from buildtool.lock import freshness

from ..helpers import write_lock

STEPS = {"training": "r.example/t/training@sha256:" + "1" * 64}
FIX = "; run `buildtool compile`"
COMPILE_AGAIN = "; compile it again with `buildtool compile`"


def workflow(*templates: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "kind": "Workflow",
        "metadata": {"generateName": "p-", "annotations": {"a": "1"}},
        "spec": {"entrypoint": "p", **spec, "templates": list(templates)},
    }


A = {"name": "a", "container": {"image": "x"}}
A2 = {"name": "a", "container": {"image": "y"}}
B = {"name": "b", "dag": {"tasks": []}}


# -- where a workflow first differs ---------------------------------------------------------------------------


def with_annotations(w: dict[str, Any], **annotations: object) -> dict[str, Any]:
    return {**w, "metadata": {**w["metadata"], "annotations": {**w["metadata"]["annotations"], **annotations}}}


@pytest.mark.parametrize(
    "old, new, where",
    [
        pytest.param(workflow(A, B), workflow(A, B), None, id="equal"),
        pytest.param(
            with_annotations(workflow(A), **{"pipelines.kubeflow.org/pipeline_compilation_time": "then"}),
            with_annotations(workflow(A), **{"pipelines.kubeflow.org/pipeline_compilation_time": "now"}),
            None,
            id="compile-time-only",
        ),
        pytest.param(
            with_annotations(workflow(A), **{freshness.ANNOTATION: "sha256:old"}), workflow(A), None, id="digest-only"
        ),
        pytest.param(workflow(B), workflow(A, B), "template a is missing (compile makes it now)", id="missing"),
        pytest.param(workflow(A2, B), workflow(A, B), "template a differs", id="differs"),
        pytest.param(workflow(B, A2), workflow(B, A), "template a differs", id="differs-second"),
        pytest.param(workflow(A, B), workflow(A), "template b is no longer made by compile", id="no-longer-made"),
        pytest.param(
            workflow(A, {"name": "z"}, B),
            workflow(A, {"name": "y"}, B),
            "template y is missing (compile makes it now)",
            id="first-new-template-named",
        ),
        pytest.param(
            with_annotations(workflow(A), a="2"), workflow(A), "metadata.annotations differs", id="metadata-field"
        ),
        pytest.param(workflow(A, entrypoint="q"), workflow(A), "spec.entrypoint differs", id="spec-field"),
        pytest.param(workflow(A), workflow(A, arguments={}), "spec.arguments differs", id="spec-field-added"),
        pytest.param(
            workflow(A, arguments={"p": 1}, entrypoint="q"),
            workflow(A),
            "spec.arguments differs",
            id="first-spec-field-in-order",
        ),
        pytest.param(
            {**workflow(A), "kind": "Pod"}, workflow(A), "the workflow differs outside its templates", id="outside"
        ),
        pytest.param(
            {**workflow(A), "metadata": "text"},
            workflow(A),
            "the workflow differs outside its templates",
            id="metadata-not-mapping",
        ),
        pytest.param(
            {**workflow(A), "spec": ["x"]},
            workflow(A),
            "template a is missing (compile makes it now)",
            id="spec-not-mapping",
        ),
        pytest.param(
            workflow(A, {"name": 5}, "text"),
            workflow(A),
            "the workflow differs outside its templates",
            id="templates-without-names",
        ),
    ],
)
def test_first_difference_names_the_template_or_field(old, new, where):
    assert freshness.first_difference(old, new) == where


def test_first_difference_leaves_the_workflows_as_they_were():
    old = with_annotations(workflow(A), **{freshness.ANNOTATION: "sha256:old"})
    before = yaml.safe_dump(old)
    freshness.first_difference(old, workflow(A))
    assert yaml.safe_dump(old) == before


# -- the recorded digest -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "document, value",
    [
        pytest.param({}, None, id="nothing"),
        pytest.param({"metadata": "x"}, None, id="metadata-not-mapping"),
        pytest.param({"metadata": {"annotations": ["x"]}}, None, id="annotations-not-mapping"),
        pytest.param({"metadata": {"annotations": {freshness.ANNOTATION: 5}}}, None, id="not-text"),
        pytest.param({"metadata": {"annotations": {freshness.ANNOTATION: "sha256:1"}}}, "sha256:1", id="recorded"),
    ],
)
def test_recorded_reads_only_a_text_annotation(document, value):
    assert freshness.recorded(document) == value


def test_stamp_adds_to_the_annotations_and_keeps_the_others():
    bare: dict[str, Any] = {}
    freshness.stamp(bare, "sha256:1")
    assert bare == {"metadata": {"annotations": {"buildtool/compile-inputs": "sha256:1"}}}
    annotated = workflow(A)
    freshness.stamp(annotated, "sha256:2")
    assert annotated["metadata"]["annotations"] == {"a": "1", "buildtool/compile-inputs": "sha256:2"}
    assert freshness.recorded(annotated) == "sha256:2"


# -- what the digest covers ----------------------------------------------------------------------------------------


def test_source_files_are_the_pipeline_and_steps_packages_without_caches(project):
    loaded = config.load(project)
    root = loaded.root
    (root / "pipeline" / "__pycache__").mkdir(exist_ok=True)
    (root / "pipeline" / "__pycache__" / "steps.cpython-311.pyc").write_bytes(b"x")
    (root / "pipeline" / ".mypy_cache" / "deep").mkdir(parents=True)
    (root / "pipeline" / ".mypy_cache" / "deep" / "x.json").write_text("{}")
    (root / "pipeline" / ".pytest_cache").mkdir()
    (root / "pipeline" / ".pytest_cache" / "v").write_text("1")
    (root / "pipeline" / "old.pyc").write_bytes(b"x")
    (root / "pipeline" / "old.pyo").write_bytes(b"x")
    (root / "pipeline" / "sub").mkdir()
    (root / "pipeline" / "sub" / "data.json").write_text("{}")
    (root / "pipeline" / "sub" / "z.py").write_text("")
    os.symlink(root / "images", root / "pipeline" / "linked")
    (root / "images" / "other.py").write_text("")
    files = freshness.source_files(loaded)
    relative = [str(p.relative_to(root)) for p in files]
    assert relative == sorted(relative)
    assert "pipeline/sub/data.json" in relative and "pipeline/sub/z.py" in relative
    assert "pipeline/steps.py" in relative and "pipeline/training_pipeline.py" in relative
    assert all(p.startswith("pipeline/") for p in relative)
    assert not [p for p in relative if "cache" in p or p.endswith((".pyc", ".pyo")) or "linked" in p]


def test_single_modules_and_a_second_package_count_too(project):
    loaded = config.load(project)
    root = loaded.root
    (root / "factory.py").write_text("")
    (root / "mysteps").mkdir()
    (root / "mysteps" / "__init__.py").write_text("")
    (root / "mysteps" / "one.py").write_text("")
    both = dataclasses.replace(loaded, pipeline="factory.sub:make", steps_module="mysteps.one")
    assert [str(p.relative_to(root)) for p in freshness.source_files(both)] == [
        "factory.py",
        "mysteps/__init__.py",
        "mysteps/one.py",
    ]
    gone = dataclasses.replace(loaded, pipeline="absent:make", steps_module="absent_too")
    assert freshness.source_files(gone) == []


def digest_after(loaded: config.Config, change: str) -> str:
    """The inputs digest after one change to what compile reads (or to something it does not read)."""
    root, steps = loaded.root, dict(STEPS)
    if change == "step":
        steps["training"] = steps["training"].replace("1" * 64, "2" * 64)
    elif change == "step-added":
        steps["upload"] = steps["training"]
    elif change == "pipeline":
        loaded = dataclasses.replace(loaded, pipeline="pipeline.training_pipeline:other")
    elif change == "steps_module":
        loaded = dataclasses.replace(loaded, steps_module="pipeline.other")
    elif change == "image_pull_policy":
        loaded = dataclasses.replace(loaded, image_pull_policy="Always")
    elif change == "credentials":
        loaded = dataclasses.replace(loaded, credentials="secret")
    elif change == "external_images":
        loaded = dataclasses.replace(loaded, external_images=("r.example/lib/report",))
    elif change == "file-content":
        path = root / "pipeline" / "steps.py"
        path.write_text(path.read_text() + "\n")
    elif change == "file-added":
        (root / "pipeline" / "extra.txt").write_text("")
    elif change == "file-renamed":
        (root / "pipeline" / "steps.py").rename(root / "pipeline" / "steps2.py")
    elif change == "cache":
        (root / "pipeline" / "__pycache__").mkdir(exist_ok=True)
        (root / "pipeline" / "__pycache__" / "x.pyc").write_bytes(b"x")
    elif change == "outside":
        (root / "images" / "training" / "requirements.txt").write_text("numpy==2\n")
    return freshness.inputs_digest(loaded, steps)


@pytest.mark.parametrize(
    "change, changes_digest",
    [
        ("step", True),
        ("step-added", True),
        ("pipeline", True),
        ("steps_module", True),
        ("image_pull_policy", True),
        ("credentials", True),
        ("external_images", True),
        ("file-content", True),
        ("file-added", True),
        ("file-renamed", True),
        ("cache", False),
        ("outside", False),
    ],
)
def test_the_digest_covers_what_compile_reads_and_only_that(project, change, changes_digest):
    loaded = config.load(project)
    before = freshness.inputs_digest(loaded, STEPS)
    assert before.startswith("sha256:") and len(before) == len("sha256:") + 64
    assert freshness.inputs_digest(loaded, dict(reversed(list({**STEPS, "u": "v"}.items())))) == (
        freshness.inputs_digest(loaded, {**STEPS, "u": "v"})
    )
    assert (digest_after(loaded, change) != before) is changes_digest


def test_the_digest_covers_the_kfp_and_buildtool_versions(project, monkeypatch):
    loaded = config.load(project)
    before = freshness.inputs_digest(loaded, STEPS)
    assert freshness._version("kfp") == "1.8.22"
    assert freshness._version("no-such-distribution-here") == "unknown"
    real = freshness.importlib.metadata.version
    for name in ("kfp", "buildtool"):
        monkeypatch.setattr(
            freshness.importlib.metadata, "version", lambda d, name=name: "0.0.0" if d == name else real(d)
        )
        assert freshness.inputs_digest(loaded, STEPS) != before, name


# -- refusals: the workflow named, where it differs, and the fix ----------------------------------------------------


@pytest.mark.parametrize(
    "text, problem",
    [
        pytest.param("kind: [unclosed\n", "upload.yaml: not valid YAML", id="not-yaml"),
        pytest.param("a: &x 1\nb: *x\n", "upload.yaml: ", id="alias"),
        pytest.param("- kind: Workflow\n", "upload.yaml: not an Argo Workflow", id="a-list"),
        pytest.param("just text\n", "upload.yaml: not an Argo Workflow", id="a-string"),
    ],
)
def test_an_unreadable_workflow_text_is_stale_naming_it(project, text, problem):
    loaded = config.load(project)
    with pytest.raises(StalePipelineError) as caught:
        freshness.require_current_text(loaded, text, STEPS, label="upload.yaml")
    message = str(caught.value)
    assert message.startswith(problem) and message.endswith(COMPILE_AGAIN), message


def test_a_stale_workflow_names_the_label_the_place_and_the_fix(project):
    loaded, lock = write_lock(project)
    fresh = kfp_compile.create_workflow(loaded, lock.steps)
    freshness.require_current(loaded, fresh, lock.steps, label="pipeline.yaml")
    edited = yaml.safe_load(yaml.safe_dump(fresh))
    edited["spec"]["entrypoint"] = "elsewhere"
    with pytest.raises(StalePipelineError) as caught:
        freshness.require_current(loaded, edited, lock.steps, label="pipeline.yaml")
    message = str(caught.value)
    assert message.startswith("pipeline.yaml is stale: spec.entrypoint differs from what `buildtool compile` makes")
    assert "current sources and image map" in message and message.endswith(FIX)


def test_a_recorded_digest_is_trusted_by_default_and_checked_in_full_on_request(project):
    """check trusts the digest (no compile); a gate on bytes a user may have edited compares in full."""
    loaded, lock = write_lock(project)
    fresh = kfp_compile.create_workflow(loaded, lock.steps)
    freshness.stamp(fresh, freshness.inputs_digest(loaded, lock.steps))
    edited = yaml.safe_load(yaml.safe_dump(fresh))
    edited["spec"]["entrypoint"] = "elsewhere"
    freshness.require_current(loaded, edited, lock.steps, label="pipeline.yaml")
    with pytest.raises(StalePipelineError, match="pipeline.yaml is stale: spec.entrypoint differs"):
        freshness.require_current(loaded, edited, lock.steps, label="pipeline.yaml", full=True)
    with pytest.raises(StalePipelineError, match="upload is stale: spec.entrypoint differs"):
        freshness.require_current_text(loaded, yaml.safe_dump(edited), lock.steps, label="upload")
    freshness.require_current_text(loaded, yaml.safe_dump(fresh), lock.steps, label="upload")
    other = {**lock.steps, "training": lock.steps["upload_model"]}
    with pytest.raises(StalePipelineError, match="pipeline.yaml is stale: template training differs"):
        freshness.require_current(loaded, fresh, other, label="pipeline.yaml")


def test_the_compile_inputs_digest_is_one_canonical_encoding(tmp_path):
    """sha256 of compact, key-sorted JSON: the same inputs give the same annotation from one machine to the next."""
    import hashlib
    import importlib.metadata
    import json

    (tmp_path / "pkg" / "sub").mkdir(parents=True)
    (tmp_path / "pkg" / "__init__.py").write_bytes(b"")
    (tmp_path / "pkg" / "sub" / "steps.py").write_bytes(b"def f():\n    return 1\n")
    (tmp_path / "factory.py").write_bytes(b"x = 1\n")
    cfg = config.Config(
        path=tmp_path / "pyproject.toml",
        root=tmp_path,
        registry="r.example",
        repository="t",
        base_image="b",
        platform="linux/amd64",
        image_map=tmp_path / "image_map.yaml",
        output=tmp_path / "pipeline.yaml",
        pipeline="factory:make",
        steps_module="pkg.sub.steps",
        image_pull_policy="Always",
        credentials="k8s-secret:creds",
        external_images=("r.example/lib/report",),
    )
    steps = {"upload": "r.example/t/u@sha256:" + "2" * 64, "train": STEPS["training"]}

    def sha(data: bytes) -> str:
        return hashlib.sha256(data).hexdigest()

    document = {
        "buildtool": importlib.metadata.version("buildtool"),
        "credentials": "k8s-secret:creds",
        "external_images": ["r.example/lib/report"],
        "files": [
            ["factory.py", sha(b"x = 1\n")],
            ["pkg/__init__.py", sha(b"")],
            ["pkg/sub/steps.py", sha(b"def f():\n    return 1\n")],
        ],
        "image_pull_policy": "Always",
        "kfp": importlib.metadata.version("kfp"),
        "pipeline": "factory:make",
        "steps": [["train", STEPS["training"]], ["upload", steps["upload"]]],
        "steps_module": "pkg.sub.steps",
    }
    encoded = json.dumps(document, separators=(",", ":")).encode()
    assert encoded.startswith(b'{"buildtool":"') and b'", "' not in encoded  # keys in order, no spaces
    assert freshness.inputs_digest(cfg, steps) == "sha256:" + sha(encoded)


@pytest.mark.parametrize("setting", ["flows:make", "flows:make:pipeline", "flows:make.v2"])
def test_the_factory_module_is_what_comes_before_the_first_colon(project, setting):
    """As load_factory reads the setting: `flows:make:pipeline` names the function `make:pipeline` of `flows`."""
    loaded = config.load(project)
    (loaded.root / "flows.py").write_text("")
    cfg = dataclasses.replace(loaded, pipeline=setting)
    files = [str(p.relative_to(loaded.root)) for p in freshness.source_files(cfg)]
    assert files[0] == "flows.py" and all(f.startswith("pipeline/") for f in files[1:]) and len(files) > 1


def test_values_yaml_reads_as_dates_compare_as_their_text():
    """The strict reader turns an unquoted date into a date; kfp writes text. Both compare as the same text."""
    import datetime

    old = with_annotations(workflow(A), note=datetime.date(2024, 1, 2))
    new = with_annotations(workflow(A), note="2024-01-02")
    assert freshness.first_difference(old, new) is None
    assert freshness.first_difference(old, with_annotations(workflow(A), note="2024-01-03")) == (
        "metadata.annotations differs"
    )
