"""What the guarantee modules tell the user, to the word: verify's problems, staleness and digest
explanations, compile's refusals. A message that loses the file, the step or the reason is a bug
(bench/mutation.sh finds those these tests would miss)."""

from __future__ import annotations

import logging

import pytest
import yaml

from buildtool import config
from buildtool.errors import CompileError, ImageMapError, VerifyError
from buildtool.gate import compiler, kfp_compile, verify
from buildtool.inputs import digest
from buildtool.lock import image_map, staleness

from ..helpers import write_lock

NOT_BUILT = "; an image buildtool does not build must be pinned and its repository listed in external_images"
PIN = "r.example/t/training:in-1@sha256:" + "1" * 64
UPLOAD = "r.example/t/upload:in-1@sha256:" + "2" * 64


# -- verify ----------------------------------------------------------------------------------------------------


def test_load_workflow_names_the_file_and_the_fix(tmp_path):
    path = tmp_path / "pipeline.yaml"
    with pytest.raises(VerifyError) as caught:
        verify.load_workflow(path)
    assert str(caught.value) == f"{path}: not found; compile it with `buildtool compile`"
    path.write_text("kind: [unclosed\n")
    with pytest.raises(VerifyError) as caught:
        verify.load_workflow(path)
    assert str(caught.value) == (
        f"{path}: not valid YAML: while parsing a flow sequence did not find expected ',' "
        "or ']' (line 2, column 1); compile it again with `buildtool compile`"
    )
    for text in ("- kind: Workflow\n", "kind: Pod\n", "just text\n"):
        path.write_text(text)
        with pytest.raises(VerifyError) as caught:
            verify.load_workflow(path)
        assert str(caught.value) == (
            f"{path}: not an Argo Workflow (kind: Workflow); compile it with `buildtool compile`"
        )
    path.write_text("kind: Workflow\nspec: {}\n")
    assert verify.load_workflow(path) == {"kind": "Workflow", "spec": {}}


def test_a_workflow_without_templates_is_a_problem_and_every_step_is_unrun():
    """Fail closed: a workflow whose spec or templates cannot be read names that place, and runs no step."""
    unrun = "step training: in the image map but no template of the workflow runs it"
    for workflow, where, problem in (
        ({"kind": "Workflow"}, "spec", "expected a mapping, got nothing"),
        ({"kind": "Workflow", "spec": {}}, "spec.templates", "expected a list of templates, got nothing"),
        ({"kind": "Workflow", "spec": {"templates": {}}}, "spec.templates", "expected a list of templates, got dict"),
    ):
        assert list(verify.images_in(workflow)) == [(verify.WORKFLOW, where, None)]
        assert verify.pin_problems(workflow, {"training": PIN}) == [f"{where}: {problem}", unrun]
    empty = {"kind": "Workflow", "spec": {"templates": []}}
    assert list(verify.images_in(empty)) == []
    assert verify.pin_problems(empty, {"training": PIN}) == [unrun]


def test_pin_problems_name_template_place_and_reason():
    spec = '{"implementation": {"container": {"image": "%s"}}}'
    workflow = {
        "kind": "Workflow",
        "spec": {
            "templates": [
                {
                    "name": "training",
                    "container": {"image": PIN},
                    "metadata": {"annotations": {verify.COMPONENT_SPEC: spec % PIN}},
                },
                {"name": "upload-model", "container": {}},
                {"name": "other-step", "container": {"image": UPLOAD}},
                {"container": {"image": "r.example/t/x:latest"}},
                {"name": "unpinned", "container": {"image": "r.example/t/x:latest"}},
                {"name": "broken", "metadata": {"annotations": {verify.COMPONENT_SPEC: "{not json"}}},
                {"name": "dag", "dag": {"tasks": []}},
            ]
        },
    }
    assert verify.pin_problems(workflow, {"training": PIN, "upload_model": UPLOAD, "download": UPLOAD}) == [
        "template upload-model: container.image: container holds no image (dict)",
        f"template other-step: container.image: {UPLOAD} serves no step of the image map "
        f"(download, training, upload_model){NOT_BUILT}",
        "template #3: spec.templates[3]: expected a mapping with a name",
        "template unpinned: container.image: r.example/t/x:latest is not pinned by digest "
        "(expected exactly one '@sha256:<64 hex>')",
        f"template broken: {verify.COMPONENT_SPEC} annotation: cannot be read as a kfp component spec",
        "step download: in the image map but no template of the workflow runs it",
        "step upload_model: in the image map but no template of the workflow runs it",
    ]


# -- staleness and digest explanations -------------------------------------------------------------------------


def test_staleness_describe_joins_images_and_reasons(project):
    loaded = config.load(project)
    text = staleness.describe(
        {"training": ["file a changed", "build arg B changed"], "base": ["platform changed"]}, loaded
    )
    assert text == "image base: platform changed | image training (step training): file a changed; build arg B changed"


def test_explain_names_every_kind_of_change():
    before = {
        "platform": "linux/amd64",
        "base": "sha256:1",
        "imports": "",
        "file:a.txt": "aaa",
        "file:run.sh": "bbb",
        "file:gone.txt": "ccc",
        "link:l": "t1",
        "dir:d": "",
        "arg:A": "1",
        "file:x:y": "1",
        "odd:thing": "1",
        "plain": "1",
    }
    after = {
        "platform": "linux/arm64",
        "base": "sha256:2",
        "imports": "os",
        "file:a.txt": "ddd",
        "file:run.sh": "x:bbb",
        "file:new.txt": "eee",
        "link:l": "t2",
        "dir:e": "",
        "arg:A": "2",
        "file:x:y": "2",
        "odd:thing": "2",
    }
    assert digest.explain(before, after) == [
        "build arg A changed",
        "base image changed (sha256:1 -> sha256:2)",
        "folder d removed",
        "folder e added",
        "file a.txt changed",
        "file gone.txt removed",
        "file new.txt added",
        "file run.sh executable bit changed",
        "file x:y changed",
        "modules the step imports changed (- -> os)",
        "link l changed",
        "odd thing changed",
        "plain removed",
        "platform changed (linux/amd64 -> linux/arm64)",
    ]
    assert digest.explain({"imports": "os"}, {"imports": ""}) == ["modules the step imports changed (os -> -)"]
    assert digest.explain({"file:s": "x:abc"}, {"file:s": "abc"}) == ["file s executable bit changed"]
    assert digest.explain({"link:s": "x:abc"}, {"link:s": "abc"}) == ["link s changed"]


# -- compile ---------------------------------------------------------------------------------------------------

FACTORY = """\
import warnings

from pipeline.training_pipeline import make_pipeline as real


def make_pipeline(img_name_map, image_pull_policy="IfNotPresent", **settings):
{body}
"""


def use_factory(project, name: str, body: str) -> config.Config:
    (project.parent / f"{name}.py").write_text(FACTORY.format(body=body))
    project.write_text(
        project.read_text().replace(
            'pipeline = "pipeline.training_pipeline:make_pipeline"', f'pipeline = "{name}:make_pipeline"'
        )
    )
    return config.load(project)


def test_a_factory_that_fails_is_a_compile_error_naming_it(project):
    write_lock(project)
    loaded = use_factory(project, "fails_early", "    raise ValueError('no such step')")
    with pytest.raises(CompileError) as caught:
        compiler.compile_pipeline(loaded, loaded.output)
    assert str(caught.value) == "fails_early:make_pipeline: building the pipeline failed: ValueError: no such step"


def test_a_pipeline_kfp_cannot_compile_is_a_compile_error_naming_it(project):
    write_lock(project)
    loaded = use_factory(
        project, "fails_in_kfp", "    def pipeline():\n        raise RuntimeError('inside')\n    return pipeline"
    )
    with pytest.raises(CompileError) as caught:
        compiler.compile_pipeline(loaded, loaded.output)
    assert str(caught.value) == "kfp could not compile fails_in_kfp:make_pipeline: RuntimeError: inside"
    assert not loaded.output.exists()


def test_kfp_warnings_go_to_the_debug_log(project, caplog):
    write_lock(project)
    loaded = use_factory(
        project,
        "warns",
        "    pipeline = real(img_name_map, image_pull_policy=image_pull_policy,"
        " **settings)\n"
        "    def warned(*args, **kwargs):\n"
        "        warnings.warn('a note from the pipeline')\n"
        "        return pipeline(*args, **kwargs)\n"
        "    warned.__signature__ = __import__('inspect').signature(pipeline)\n"
        "    warned._component_human_name = 'pipeline'\n"
        "    return warned",
    )
    caplog.set_level(logging.DEBUG, logger="buildtool.gate.kfp_compile")
    compiler.compile_pipeline(loaded, loaded.output)
    logged = [r.getMessage() for r in caplog.records if r.name == "buildtool.gate.kfp_compile"]
    assert "kfp: a note from the pipeline" in logged


def test_the_configured_pull_policy_reaches_every_step(project):
    project.write_text(
        project.read_text().replace(
            'pipeline = "pipeline.training_pipeline:make_pipeline"',
            'pipeline = "pipeline.training_pipeline:make_pipeline"\nimage_pull_policy = "Always"',
        )
    )
    loaded, _ = write_lock(project)
    compiler.compile_pipeline(loaded, loaded.output)
    workflow = yaml.safe_load(loaded.output.read_text())
    policies = {t["name"]: t["container"]["imagePullPolicy"] for t in workflow["spec"]["templates"] if "container" in t}
    assert policies == {"download-training-dataset": "Always", "training": "Always", "upload-model": "Always"}


def test_a_missing_factory_function_names_the_setting(project):
    loaded = use_factory(project, "no_factory", "    pass")
    broken = config.load(project)
    text = project.read_text().replace("no_factory:make_pipeline", "no_factory:missing")
    project.write_text(text)
    broken = config.load(project)
    with pytest.raises(CompileError) as caught:
        kfp_compile.load_factory(broken)
    assert str(caught.value) == f"{broken.path}: [tool.buildtool] pipeline: no_factory has no function 'missing'"
    assert loaded.pipeline == "no_factory:make_pipeline"


def test_the_project_pipeline_module_wins_over_a_same_named_one_elsewhere(project, tmp_path_factory, monkeypatch):
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    (elsewhere / "shadowed.py").write_text(
        "def make_pipeline(img_name_map, image_pull_policy=None):\n    return 'wrong'\n"
    )
    monkeypatch.syspath_prepend(str(elsewhere))
    loaded = use_factory(project, "shadowed", "    return 'right'")
    assert kfp_compile.load_factory(loaded)({}) == "right"


def test_a_map_without_a_step_names_the_map_file(project):
    loaded, lock = write_lock(project)
    text = image_map.render(lock).replace("  upload_model:", "  other_step:")
    loaded.image_map.write_text(text)
    with pytest.raises(ImageMapError) as caught:
        compiler.compile_pipeline(loaded, loaded.output)
    assert str(caught.value) == (
        f"{loaded.image_map}: no image for step(s) upload_model; run `buildtool build --push` to regenerate the map"
    )


# -- image map: hostile entries, each refused naming file and key ---------------------------------------------

GOOD = {"reference": PIN, "inputs_digest": "sha256:" + "3" * 64, "base": "image:base", "inputs": {"file:a": "1"}}


@pytest.mark.parametrize(
    "entry, key, problem",
    [
        (3, "images.x", "expected a mapping with reference, inputs_digest, base, inputs"),
        (
            {**GOOD, "reference": "r.example/t/x:in-1"},
            "images.x.reference",
            "not pinned by digest (expected exactly one '@sha256:<64 hex>')",
        ),
        ({k: v for k, v in GOOD.items() if k != "reference"}, "images.x.reference", "expected a string, got NoneType"),
        ({**GOOD, "inputs_digest": None}, "images.x.inputs_digest", "expected sha256:<64 hex>"),
        ({**GOOD, "inputs_digest": "sha256:abc"}, "images.x.inputs_digest", "expected sha256:<64 hex>"),
        ({**GOOD, "base": 5}, "images.x.base", "expected a string"),
        ({**GOOD, "inputs": ["file:a"]}, "images.x.inputs", "expected a mapping"),
    ],
)
def test_hostile_lock_entries_are_refused_naming_file_and_key(tmp_path, entry, key, problem):
    path = tmp_path / "image_map.yaml"
    path.write_text(yaml.safe_dump({"steps": {"training": PIN}, "images": {"x": entry}}))
    with pytest.raises(ImageMapError) as caught:
        image_map.load(path)
    assert str(caught.value) == f"{path}: {key}: {problem}"


def test_a_good_lock_entry_loads_as_written(tmp_path):
    path = tmp_path / "image_map.yaml"
    path.write_text(yaml.safe_dump({"steps": {"training": PIN}, "images": {"x": GOOD}}))
    assert image_map.load(path).images["x"] == image_map.LockedImage(
        PIN, GOOD["inputs_digest"], "image:base", {"file:a": "1"}
    )


# -- staleness: every way a lock can stop matching the tree ----------------------------------------------------

EXTERNAL = "127.0.0.1:5000/lib/python:3.11"
DIGEST = "sha256:" + "1" * 64


def fresh_lock(project, external_pin: str = EXTERNAL + "@" + DIGEST) -> tuple[config.Config, image_map.ImageMap]:
    """The lock `build --push` writes for this tree (each context scanned with its own Dockerfile name)."""
    from buildtool.inputs import context, plan, step_imports

    loaded = config.load(project)
    contexts = {i.name: context.scan(i.context, i.dockerfile) for i in loaded.images}
    external = loaded.external_base(loaded.image("base"))
    inputs = plan.compute_inputs(loaded, contexts, {external: DIGEST}, step_imports.for_config(loaded))
    the_plan = plan.make_plan(loaded, inputs, {external: external_pin}, {}, None)
    images = {
        i.name: image_map.LockedImage(
            f"{i.tagged}@sha256:{n:064x}", i.inputs.digest, i.base_label, dict(i.inputs.items)
        )
        for n, i in enumerate(the_plan.images)
    }
    lock = image_map.ImageMap({i.step: images[i.name].reference for i in the_plan.images if i.step}, images)
    loaded.image_map.write_text(image_map.render(lock))
    return loaded, lock


def relabel(lock: image_map.ImageMap, **bases: str) -> image_map.ImageMap:
    images = dict(lock.images)
    for name, base in bases.items():
        old = images[name]
        images[name] = image_map.LockedImage(old.reference, old.inputs_digest, base, old.inputs)
    return image_map.ImageMap(lock.steps, images)


def test_images_missing_from_the_lock_or_built_on_another_image_are_all_named(project):
    loaded, lock = fresh_lock(project)
    images = {
        k: v for k, v in relabel(lock, download="image:training", upload="image:other").images.items() if k != "base"
    }
    assert staleness.stale_images(loaded, image_map.ImageMap(lock.steps, images)) == {
        "base": ["not recorded in the image map"],
        "download": ["now builds on image base, the map says image:training"],
        "upload": ["now builds on image base, the map says image:other"],
    }


@pytest.mark.parametrize("locked_base", ["image:base", EXTERNAL])
def test_an_external_base_recorded_as_a_project_image_or_unpinned_is_stale(project, locked_base):
    loaded, lock = fresh_lock(project)
    assert staleness.stale_images(loaded, relabel(lock, base=locked_base)) == {
        "base": [f"now builds on {EXTERNAL}, the map says {locked_base}"]
    }


def test_another_base_image_names_the_one_to_export(project):
    _, lock = fresh_lock(project)
    other = config.load(project, base_image="python:3.11-slim")
    assert staleness.stale_images(other, lock) == {
        "base": [
            f"base image is now python:3.11-slim, the map was built on {EXTERNAL}@{DIGEST} "
            f"(if this machine builds on that, export BUILDTOOL_BASE_IMAGE={EXTERNAL})"
        ]
    }


def test_a_base_configured_by_digest_must_be_that_digest(project):
    _, lock = fresh_lock(project)
    assert staleness.stale_images(config.load(project, base_image=f"{EXTERNAL}@{DIGEST}"), lock) == {}
    other = "sha256:" + "4" * 64
    stale = staleness.stale_images(config.load(project, base_image=f"{EXTERNAL}@{other}"), lock)
    assert list(stale) == ["base"] and stale["base"][0].startswith(f"base image is now {EXTERNAL}@{other}")


@pytest.mark.parametrize(
    "configured, pinned",
    [
        ("127.0.0.1:5000/lib/python", "127.0.0.1:5000/lib/python@" + DIGEST),
        ("127.0.0.1:5000/lib/python:latest", "127.0.0.1:5000/lib/python@" + DIGEST),
        ("127.0.0.1:5000/lib/python", "127.0.0.1:5000/lib/python:latest@" + DIGEST),
    ],
)
def test_no_tag_means_latest_on_either_side(project, configured, pinned):
    project.write_text(project.read_text().replace(f'base_image = "{EXTERNAL}"', f'base_image = "{configured}"'))
    loaded, lock = fresh_lock(project, external_pin=pinned)
    assert staleness.stale_images(loaded, lock) == {}


def test_a_custom_dockerfile_name_is_read_as_the_build_reads_it(project):
    images = project.parent / "images" / "upload"
    (images / "Dockerfile").rename(images / "build.Dockerfile")
    project.write_text(
        project.read_text().replace(
            'context = "images/upload"', 'context = "images/upload"\ndockerfile = "build.Dockerfile"'
        )
    )
    loaded, lock = fresh_lock(project)
    assert staleness.stale_images(loaded, lock) == {}


def test_a_changed_digest_with_the_same_fingerprints_still_is_stale(project):
    loaded, lock = fresh_lock(project)
    old = lock.images["training"]
    images = {
        **lock.images,
        "training": image_map.LockedImage(old.reference, "sha256:" + "5" * 64, old.base, old.inputs),
    }
    assert staleness.stale_images(loaded, image_map.ImageMap(lock.steps, images)) == {
        "training": ["inputs digest changed"]
    }


def test_require_fresh_says_how_to_go_on(project):
    loaded, lock = fresh_lock(project)
    stale = relabel(lock, upload="image:other")
    with pytest.raises(Exception) as caught:
        staleness.require_fresh(loaded, stale)
    assert str(caught.value) == (
        f"{loaded.image_map} is stale: image upload (step upload_model): now builds on image base, the map says "
        "image:other; run `buildtool build --push` to rebuild (or pass --allow-stale to compile against it anyway)"
    )
    assert staleness.require_fresh(loaded, stale, allow_stale=True) == [str(caught.value).split(" (or pass")[0]]


def test_unknown_top_level_keys_are_named(tmp_path):
    path = tmp_path / "image_map.yaml"
    path.write_text(f"steps:\n  training: {PIN}\nzeta: 1\n5: x\n")
    with pytest.raises(ImageMapError) as caught:
        image_map.load(path)
    assert str(caught.value) == f"{path}: unknown top-level key(s) 5, zeta; expected steps and images"


def test_the_map_renders_exactly_as_reviewed(tmp_path):
    lock = image_map.ImageMap(
        steps={"upload_model": UPLOAD, "training": PIN},
        images={
            "upload": image_map.LockedImage(
                UPLOAD, "sha256:" + "3" * 64, "image:base", {"platform": "linux/amd64", "file:b": "2", "file:a": "x:1"}
            ),
            "training": image_map.LockedImage(PIN, "sha256:" + "4" * 64, "image:base", {}),
        },
    )
    assert (
        image_map.render(lock)
        == image_map.HEADER
        + f"""\
steps:
  training: {PIN}
  upload_model: {UPLOAD}
images:
  training:
    reference: {PIN}
    inputs_digest: sha256:{"4" * 64}
    base: image:base
    inputs: {{}}
  upload:
    reference: {UPLOAD}
    inputs_digest: sha256:{"3" * 64}
    base: image:base
    inputs:
      file:a: x:1
      file:b: '2'
      platform: linux/amd64
"""
    )
    bare = image_map.ImageMap(steps={"training": PIN})
    assert image_map.render(bare) == image_map.HEADER + f"steps:\n  training: {PIN}\n"


# -- the inputs digest: a fixed encoding, so tags stay the same from one version to the next ---------------------


def test_the_inputs_digest_is_the_documented_canonical_encoding(tmp_path):
    import hashlib
    import json
    import os

    from buildtool.inputs import context

    root = tmp_path / "ctx"
    (root / "d").mkdir(parents=True)
    files = {
        "Dockerfile": b"FROM x\n",
        "run.sh": b"echo\n",
        "caf\u00e9.txt": b"c",
        "d/f": b"f",
        ".dockerignore": b"*.secret\n",
        "key.secret": b"hidden",
    }
    for name, data in files.items():
        (root / name).write_bytes(data)
    (root / "run.sh").chmod(0o755)
    for name in files:
        if name != "run.sh":
            (root / name).chmod(0o644)
    os.symlink("run.sh", root / "l")

    def sha(data: bytes) -> str:
        return hashlib.sha256(data).hexdigest()

    full = {
        "platform": "linux/amd64",
        "base": "sha256:" + "1" * 64,
        "imports": "json,os",
        "file:.dockerignore": sha(files[".dockerignore"]),
        "file:Dockerfile": sha(files["Dockerfile"]),
        "file:caf\u00e9.txt": sha(b"c"),
        "file:d/f": sha(b"f"),
        "dir:d": "",
        "link:l": sha(b"run.sh"),
        "file:run.sh": "x:" + sha(b"echo\n"),
        "arg:A": sha(b"1"),
    }
    encoded = json.dumps(
        {"encoding": "buildtool-inputs/1", "dockerfile": "Dockerfile", "inputs": full},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=True,
    ).encode()
    inputs = digest.compute(context.scan(root), {"A": "1"}, "linux/amd64", "sha256:" + "1" * 64, ["os", "json"])
    assert inputs.digest == "sha256:" + hashlib.sha256(encoded).hexdigest()
    assert inputs.tag == "in-" + hashlib.sha256(encoded).hexdigest()[:16]
    short = {
        k: (
            v
            if k in ("platform", "base", "imports") or not v
            else ("x:" if v.startswith("x:") else "") + v.removeprefix("x:")[:16]
        )
        for k, v in full.items()
    }
    assert dict(inputs.items) == short
    assert list(inputs.items) == sorted(short)
    assert inputs.items["file:run.sh"] == "x:" + sha(b"echo\n")[:16] and inputs.items["dir:d"] == ""
    # Pinned, so a change to the encoding shows up here before it retags every image.
    assert inputs.digest == GOLDEN_INPUTS_DIGEST


GOLDEN_INPUTS_DIGEST = "sha256:4b3fbfa67d36fa9bb4000ccbf08c7a6ada883f9499ce72cefaed6f56613883c9"


# -- plan: what enters each digest, and why an image is built -------------------------------------------------


def test_each_image_digest_takes_the_platform_its_base_and_only_a_step_image_its_imports(project):
    from buildtool.inputs import context, plan

    loaded = config.load(project)
    contexts = {i.name: context.scan(i.context, i.dockerfile) for i in loaded.images}
    inputs = plan.compute_inputs(loaded, contexts, {EXTERNAL: DIGEST}, {"training": ["numpy", "os"]})
    assert inputs["base"].items["base"] == DIGEST and inputs["base"].items["platform"] == "linux/amd64"
    assert "imports" not in inputs["base"].items
    assert inputs["training"].items["base"] == inputs["base"].digest
    assert inputs["training"].items["imports"] == "numpy,os"
    assert inputs["base"] == digest.compute(contexts["base"], {}, "linux/amd64", DIGEST)


def test_a_long_platform_is_kept_whole_in_the_fingerprints(tmp_path):
    from buildtool.inputs import context

    (tmp_path / "Dockerfile").write_text("FROM x\n")
    assert (
        digest.compute(context.scan(tmp_path), {}, "linux/riscv64/rva22u64", DIGEST).items["platform"]
        == "linux/riscv64/rva22u64"
    )


def test_why_an_image_is_built_and_what_a_reuse_points_at(project):
    from buildtool.inputs import plan

    loaded, lock = fresh_lock(project)
    from buildtool.inputs import context, step_imports

    contexts = {i.name: context.scan(i.context, i.dockerfile) for i in loaded.images}
    inputs = plan.compute_inputs(loaded, contexts, {EXTERNAL: DIGEST}, step_imports.for_config(loaded))
    pins = {EXTERNAL: f"{EXTERNAL}@{DIGEST}"}
    held = "sha256:" + "6" * 64
    again = plan.make_plan(loaded, inputs, pins, {"base": held}, lock)
    assert again.get("base").existing_digest == held and again.get("base").action == "reuse"
    assert again.get("upload").reasons == ("inputs unchanged, but the registry does not hold that tag",)
    old = lock.images["upload"]
    moved = image_map.ImageMap(
        lock.steps,
        {**lock.images, "upload": image_map.LockedImage(old.reference, "sha256:" + "5" * 64, old.base, old.inputs)},
    )
    assert plan.make_plan(loaded, inputs, pins, {"base": held}, moved).get("upload").reasons == (
        "inputs digest changed",
    )


def test_a_pipeline_setting_with_two_colons_names_the_function_part(project):
    project.write_text(
        project.read_text().replace(
            'pipeline = "pipeline.training_pipeline:make_pipeline"',
            'pipeline = "pipeline.training_pipeline:make:pipeline"',
        )
    )
    loaded = config.load(project)
    with pytest.raises(CompileError) as caught:
        kfp_compile.load_factory(loaded)
    assert str(caught.value).endswith("pipeline: pipeline.training_pipeline has no function 'make:pipeline'")


def test_an_unpinned_step_names_the_map_file(tmp_path):
    path = tmp_path / "image_map.yaml"
    path.write_text("steps:\n  training: r.example/t/training:in-1\n")
    with pytest.raises(ImageMapError) as caught:
        image_map.load(path)
    assert str(caught.value).startswith(f"{path}: steps.training: 'r.example/t/training:in-1' is not pinned")


# -- verify: every place a template can name an image, each problem worded exactly ---------------------------


def test_every_container_field_and_its_malformed_forms_are_named():
    """containerSet, script, initContainers, sidecars, annotations, templateDefaults and podSpecPatch: an image in
    each is read (containerSet and script run their step), and each malformed form is a problem naming its place."""
    spec = '{"implementation": {"container": %s}}'
    workflow = {
        "kind": "Workflow",
        "metadata": {"name": "w"},
        "spec": {
            "templates": [
                {"name": "training", "containerSet": {"containers": [{"image": PIN}, {"name": "no-image"}]}},
                {
                    "name": "upload-model",
                    "script": {"image": UPLOAD},
                    "initContainers": {"image": PIN},
                    "sidecars": [{"image": PIN}, "text"],
                },
                {"name": "set-not-a-map", "containerSet": ["x"]},
                {"name": "set-without-list", "containerSet": {"containers": None}},
                {"name": "script-no-image", "script": {"source": "x"}},
                {"name": "a1", "container": {"image": PIN}, "metadata": {"annotations": [1]}},
                {
                    "name": "a2",
                    "container": {"image": PIN},
                    "metadata": {"annotations": {verify.COMPONENT_SPEC: spec % "{}"}},
                },
                {
                    "name": "a3",
                    "container": {"image": PIN},
                    "metadata": {
                        "annotations": {verify.COMPONENT_SPEC: spec % f'{{"image": "{UPLOAD}"}}', "other": "x"}
                    },
                },
                "not a template",
            ],
            "templateDefaults": {"container": {"image": PIN}},
            "podSpecPatch": f'{{"containers": [{{"name": "main", "image": "{PIN}"}}]}}',
        },
    }
    other = f"{PIN} serves no step of the image map (training, upload_model){NOT_BUILT}"
    everywhere = f"{PIN} applies to every template and serves no step of the image map"
    assert verify.pin_problems(workflow, {"training": PIN, "upload_model": UPLOAD}) == [
        "template training: containerSet.containers[1].image: holds no image (dict)",
        "template upload-model: initContainers: expected a list of containers, got dict",
        f"template upload-model: sidecars[0].image: {PIN} differs from the map's {UPLOAD}",
        "template upload-model: sidecars[1].image: holds no image (str)",
        f"template upload-model: initContainers.image: {PIN} differs from the map's {UPLOAD}",
        "template set-not-a-map: containerSet: expected a mapping, got list",
        "template set-without-list: containerSet.containers: expected a list of containers, got nothing",
        "template script-no-image: script.image: script holds no image (dict)",
        f"template a1: container.image: {other}",
        "template a1: metadata.annotations: expected a mapping, got list",
        f"template a2: container.image: {other}",
        f"template a2: {verify.COMPONENT_SPEC} annotation: names no image",
        f"template a3: container.image: {other}",
        f"template a3: {verify.COMPONENT_SPEC} annotation: {UPLOAD} serves no step of the image map "
        f"(training, upload_model){NOT_BUILT}",
        "template #8: spec.templates[8]: expected a mapping with a name",
        f"spec.templateDefaults.container.image: {everywhere}",
        f"spec.podSpecPatch.containers[0].image: {everywhere}",
    ]
    images = list(verify.images_in(workflow))
    assert images[:3] == [
        ("training", "containerSet.containers[0].image", PIN),
        ("training", "containerSet.containers[1].image", None),
        ("upload-model", "script.image", UPLOAD),
    ]
    assert (verify.WORKFLOW, "spec.templateDefaults.container.image", PIN) in images


def test_unreadable_defaults_too_many_templates_and_the_summary_line():
    assert verify.pin_problems({"kind": "Workflow", "spec": {"templates": [], "templateDefaults": [1]}}, {}) == [
        "spec.templateDefaults: expected a mapping, got list"
    ]
    many = {"kind": "Workflow", "spec": {"templates": [{"name": "a"}] * (verify.MAX_TEMPLATES + 1)}}
    assert verify.pin_problems(many, {}) == [
        f"spec.templates: {verify.MAX_TEMPLATES + 1} templates, more than the {verify.MAX_TEMPLATES} buildtool reads"
    ]
    assert verify.summary("p.yaml", [str(n) for n in range(12)]) == (
        "p.yaml: 12 problem(s): 0; 1; 2; 3; 4; 5; 6; 7; 8; 9; and 2 more"
    )
    assert verify.summary("p.yaml", ["a", "b"], limit=1) == "p.yaml: 2 problem(s): a; and 1 more"
    assert verify.summary("p.yaml", ["a"]) == "p.yaml: 1 problem(s): a"


# -- verify: an embedded document (podSpecPatch, a resource manifest), each problem worded exactly -------------

UNPINNED = "is not pinned by digest (expected exactly one '@sha256:<64 hex>')"
KEYED = "a parameter in a key: Argo would substitute it before the document is applied, so it could name any field"
BEARING = "is a parameter under an image-bearing field: Argo would substitute it, so it could become any image"
LONG_PARAMETER = "{{inputs.parameters." + "p" * 80 + "}}"


def patched(value: object) -> dict[str, object]:
    return {"kind": "Workflow", "spec": {"templates": [{"name": "t", "podSpecPatch": value}]}}


def manifest(document: object) -> dict[str, object]:
    text = yaml.safe_dump(document)
    return {"kind": "Workflow", "spec": {"templates": [{"name": "t", "resource": {"manifest": text}}]}}


@pytest.mark.parametrize(
    "workflow, problems",
    [
        pytest.param(patched(5), ["template t: podSpecPatch: expected a YAML or JSON string, got int"], id="not-text"),
        pytest.param(
            patched('"{{workflow.parameters.patch}}"'),
            ["template t: podSpecPatch: the whole document is a parameter: Argo would substitute it"],
            id="whole-parameter",
        ),
        pytest.param(
            patched('{"{{inputs.parameters.k}}": 1}'),
            [f"template t: podSpecPatch.{{{{inputs.parameters.k}}}}: {KEYED}"],
            id="parameter-key",
        ),
        pytest.param(
            patched('{"containers": [{"name": "main", "image": "{{inputs.parameters.i}}"}]}'),
            [
                f"template t: podSpecPatch.containers[0].image: {{{{inputs.parameters.i}}}} {BEARING}",
                f"template t: podSpecPatch.containers[0].image: {{{{inputs.parameters.i}}}} {UNPINNED}",
            ],
            id="parameter-image",
        ),
        pytest.param(
            patched('{"InitContainers": ["{{inputs.parameters.c}}"]}'),
            [f"template t: podSpecPatch.InitContainers[0]: {{{{inputs.parameters.c}}}} {BEARING}"],
            id="parameter-in-a-container-list",
        ),
        pytest.param(
            patched(f'{{"sidecars": [{{"image": "{LONG_PARAMETER}"}}]}}'),
            [
                f"template t: podSpecPatch.sidecars[0].image: {LONG_PARAMETER[:80]}... {BEARING}",
                f"template t: podSpecPatch.sidecars[0].image: {LONG_PARAMETER} {UNPINNED}",
            ],
            id="long-parameter-cut",
        ),
        pytest.param(
            patched('{"metadata": {"labels": {"run": "{{workflow.name}}"}}, "nodeName": "{{inputs.parameters.n}}"}'),
            [],
            id="parameters-elsewhere-are-harmless",
        ),
        pytest.param(
            manifest({"kind": "Pod", "spec": {"podSpecPatch": "{}"}}),
            ["template t: resource.manifest.spec.podSpecPatch: a document embedded in an embedded document"],
            id="nested-document",
        ),
        pytest.param(
            manifest({"kind": "Pod", "spec": {"containers": [{"name": "c", "image": PIN}]}}),
            [
                f"template t: resource.manifest.spec.containers[0].image: {PIN} serves no step of the image map ()"
                + NOT_BUILT
            ],
            id="manifest-image",
        ),
    ],
)
def test_each_problem_of_an_embedded_document_names_its_template_and_field(workflow, problems):
    assert verify.pin_problems(workflow, {}) == problems


def test_an_unreadable_embedded_document_names_its_field_and_why():
    (problem,) = verify.pin_problems(patched("{containers: [unclosed"), {})
    assert problem.startswith("template t: podSpecPatch: cannot be read (not valid YAML: ") and problem.endswith(")")


# -- verify: the edges of what is read ------------------------------------------------------------------------------

TOO_DEEP = ["the workflow is nested too deeply to read"]
OUTSIDE = "runs a template of another WorkflowTemplate, which this file does not show"


def one_template(**fields: object) -> dict[str, object]:
    return {"kind": "Workflow", "spec": {"templates": [{"name": "t", **fields}]}}


def nested(depth: int) -> object:
    node: object = "x"
    for _ in range(depth):
        node = [node]
    return node


@pytest.mark.parametrize(
    "workflow, problems",
    [
        pytest.param(
            {"kind": "Workflow", "spec": {"templates": [{"name": f"t{n}"} for n in range(verify.MAX_TEMPLATES)]}},
            [],
            id="exactly-the-template-cap-is-read",
        ),
        pytest.param(
            {"kind": "Workflow", "spec": {"templates": [{"name": ""}, {"name": 5, "container": {"image": PIN}}]}},
            [
                "template #0: spec.templates[0]: expected a mapping with a name",
                "template #1: spec.templates[1]: expected a mapping with a name",
            ],
            id="empty-or-non-text-names",
        ),
        pytest.param(
            {"kind": "Workflow", "spec": {"templates": [], "templateDefaults": {"container": {}}}},
            ["spec.templateDefaults.container.image: container holds no image (dict)"],
            id="defaults-problem-kept",
        ),
        pytest.param(
            {"kind": "Workflow", "spec": {"templates": []}, "status": {"nodes": {"n": {"image": PIN}}}},
            [f"status.nodes.n.image: {PIN} applies to every template and serves no step of the image map"],
            id="outside-spec-read",
        ),
        pytest.param(
            one_template(steps=[[{"name": "s", "templateRef": {"name": "other", "template": "x"}}]]),
            [f"template t: steps[0][0].templateRef: {OUTSIDE}"],
            id="outside-template",
        ),
        pytest.param(
            one_template(outputs={"annotations": [1]}, inputs={"metadata": "text"}, **{"5": 1}),
            [],
            id="annotations-only-under-metadata",
        ),
        pytest.param({"kind": "Workflow", "spec": {"templates": [{"name": "t", 5: "x"}]}}, [], id="non-text-key"),
        pytest.param(
            one_template(
                resource={
                    "manifest": yaml.safe_dump(
                        {"items": [{"spec": {"podSpecPatch": "{}"}}], "spec": {"podSpecPatch": "{}"}}
                    )
                }
            ),
            [
                "template t: resource.manifest.items[0].spec.podSpecPatch: a document embedded in an embedded document",
                "template t: resource.manifest.spec.podSpecPatch: a document embedded in an embedded document",
            ],
            id="nested-documents-in-lists-and-maps",
        ),
        pytest.param(one_template(container={"image": "x", "args": nested(5000)}), TOO_DEEP, id="too-deep"),
    ],
)
def test_what_places_reads_at_its_edges(workflow, problems):
    assert verify.pin_problems(workflow, {}) == problems


@pytest.mark.parametrize("length", [2000, 2001])
def test_a_problem_is_cut_only_past_2000_characters(length):
    tail = ": container.image: r.example/x:latest is not pinned by digest (expected exactly one '@sha256:<64 hex>')"
    name = "n" * (length - len("template ") - len(tail))
    whole = f"template {name}{tail}"
    assert len(whole) == length
    (problem,) = verify.pin_problems(
        {"kind": "Workflow", "spec": {"templates": [{"name": name, "container": {"image": "r.example/x:latest"}}]}}, {}
    )
    assert problem == (whole if length <= 2000 else whole[:2000] + "...")


def test_a_summary_of_exactly_the_limit_adds_no_more():
    assert verify.summary("p.yaml", ["a", "b"], limit=2) == "p.yaml: 2 problem(s): a; b"
    assert verify.summary("p.yaml", ["a", "b", "c"], limit=2) == "p.yaml: 3 problem(s): a; b; and 1 more"


def test_a_workflow_that_cannot_be_written_leaves_the_old_one_and_names_why(project):
    """The temp file beside a 250-character name is too long a name for the file system (ENAMETOOLONG)."""
    loaded, _ = write_lock(project)
    output = loaded.root / ("p" * 245 + ".yaml")
    with pytest.raises(CompileError) as caught:
        compiler.compile_pipeline(loaded, output)
    assert str(caught.value) == f"{output}: cannot write the workflow: File name too long"
    assert not [p.name for p in loaded.root.iterdir() if p.name.endswith(".yaml") and "ppp" in p.name]


@pytest.mark.parametrize("extra, accepted", [(0, True), (1, False)])
def test_workflow_bytes_are_read_up_to_the_cap(tmp_path, extra, accepted):
    """The bytes a caller already read (what submit uploads) are held to the cap the file is read with."""
    from buildtool.util import yaml_io

    head = b"kind: Workflow\n#"
    data = head + b"x" * (yaml_io.MAX_BYTES - len(head) + extra)
    path = tmp_path / "pipeline.yaml"
    if accepted:
        assert verify.load_workflow(path, data) == {"kind": "Workflow"}
        return
    with pytest.raises(VerifyError) as caught:
        verify.load_workflow(path, data)
    assert str(caught.value) == (
        f"{path}: {len(data)} bytes, more than the {yaml_io.MAX_BYTES} accepted; "
        "compile it again with `buildtool compile`"
    )
    path.write_bytes(data)
    with pytest.raises(VerifyError, match=f"^{path}: {len(data)} bytes, more than the {yaml_io.MAX_BYTES} accepted; "):
        verify.load_workflow(path)


def test_a_workflow_path_that_is_no_file_names_it_and_the_fix(tmp_path):
    with pytest.raises(VerifyError) as caught:
        verify.load_workflow(tmp_path)
    assert str(caught.value) == f"{tmp_path}: not a regular file; compile it again with `buildtool compile`"


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("", id="empty"),
        pytest.param('["{{"]', id="a-list-holding-the-marker"),
        pytest.param('{"{{": 1}', id="the-marker-as-a-key"),
        pytest.param("{1: x, 2: [a]}", id="non-text-keys"),
    ],
)
def test_an_embedded_document_that_is_no_whole_parameter(text):
    """Only a document that is itself a string holding a parameter is one; anything else is read field by field."""
    problems = verify.pin_problems(patched(text), {})
    assert not [p for p in problems if "the whole document is a parameter" in p]
    assert problems == ([f"template t: podSpecPatch.{{{{: {KEYED}"] if text == '{"{{": 1}' else [])


def test_an_unreadable_embedded_document_names_the_reader_s_problem():
    from buildtool.util import yaml_io

    text = "{containers: [unclosed"
    with pytest.raises(yaml_io.YamlProblem) as reader:
        yaml_io.parse(text)
    assert verify.pin_problems(patched(text), {}) == [f"template t: podSpecPatch: cannot be read ({reader.value})"]
