from buildtool import config
from buildtool.inputs import context, plan, step_imports
from buildtool.lock import image_map

EXTERNAL = "127.0.0.1:5000/lib/python:3.11"
PIN = EXTERNAL + "@sha256:" + "1" * 64


def inputs_for(project_path):
    loaded = config.load(project_path)
    contexts = {i.name: context.scan(i.context) for i in loaded.images}
    return loaded, plan.compute_inputs(
        loaded, contexts, {EXTERNAL: "sha256:" + "1" * 64}, step_imports.for_config(loaded)
    )


def lock_of(loaded, inputs, the_plan):
    d = "sha256:" + "f" * 64
    images = {
        i.name: image_map.LockedImage(f"{i.tagged}@{d}", i.inputs.digest, i.base_label, dict(i.inputs.items))
        for i in the_plan.images
    }
    return image_map.ImageMap(
        steps={i.step: images[i.name].reference for i in the_plan.images if i.step}, images=images
    )


def test_order_puts_bases_first(project):
    loaded = config.load(project)
    assert [i.name for i in plan.build_order(loaded)][0] == "base"


def test_everything_builds_on_an_empty_registry_and_reuses_when_present(project):
    loaded, inputs = inputs_for(project)
    first = plan.make_plan(loaded, inputs, {EXTERNAL: PIN}, {}, None)
    assert [i.action for i in first.images] == ["build"] * 4
    assert first.get("base").reasons == ("no earlier build recorded in the image map",)
    assert first.get("base").external_base == PIN and first.get("training").base_image == "base"
    held = {name: "sha256:" + "e" * 64 for name in inputs}
    second = plan.make_plan(loaded, inputs, {EXTERNAL: PIN}, held, None)
    assert [i.action for i in second.images] == ["reuse"] * 4
    assert "registry already holds" in second.get("training").reasons[0]


def test_a_change_in_training_rebuilds_training_alone_and_says_why(project):
    loaded, inputs = inputs_for(project)
    previous = lock_of(loaded, inputs, plan.make_plan(loaded, inputs, {EXTERNAL: PIN}, {}, None))
    (project.parent / "images" / "training" / "requirements.txt").write_text("numpy==2\n")
    loaded, changed = inputs_for(project)
    held = {name: "sha256:" + "e" * 64 for name, i in inputs.items()}
    new_tags = {name: held[name] for name in changed if changed[name].digest == inputs[name].digest}
    result = plan.make_plan(loaded, changed, {EXTERNAL: PIN}, new_tags, previous)
    actions = {i.name: i.action for i in result.images}
    assert actions == {"base": "reuse", "download": "reuse", "training": "build", "upload": "reuse"}
    assert result.get("training").reasons == ("file requirements.txt changed",)


def test_a_change_in_the_base_changes_every_dependent_tag(project):
    loaded, before = inputs_for(project)
    (project.parent / "images" / "base" / "Dockerfile").write_text("FROM scratch\n")
    _, after = inputs_for(project)
    assert all(before[name].tag != after[name].tag for name in before)


def test_describe_lists_action_and_reasons(project):
    loaded, inputs = inputs_for(project)
    lines = plan.describe(plan.make_plan(loaded, inputs, {EXTERNAL: PIN}, {}, None))
    assert lines[0].startswith("build  base  127.0.0.1:5000/t/base:in-")
    assert any("training (step training)" in line for line in lines)


def test_dependents_of_a_rebuilt_base_are_rebuilt_even_if_the_registry_holds_them(project):
    loaded, inputs = inputs_for(project)
    held = {name: "sha256:" + "e" * 64 for name in inputs if name != "base"}
    result = plan.make_plan(loaded, inputs, {EXTERNAL: PIN}, held, None)
    assert {i.name: i.action for i in result.images} == {n: "build" for n in inputs}
    assert result.get("upload").reasons == ("its base image base is being rebuilt",)


def test_a_new_import_in_a_step_changes_that_step_image_alone(project):
    loaded, before = inputs_for(project)
    steps = project.parent / "pipeline" / "steps.py"
    head, sep, upload = steps.read_text().partition("def upload_model(")
    steps.write_text(head + sep + upload.replace("    import os\n", "    import os\n    import csv\n", 1))
    _, after = inputs_for(project)
    changed = {name for name in before if before[name].digest != after[name].digest}
    assert changed == {"upload"}
    from buildtool.inputs import digest

    assert digest.explain(before["upload"].items, after["upload"].items) == [
        "modules the step imports changed (os,platform_client -> csv,os,platform_client)"
    ]


def test_a_tag_holding_other_inputs_is_built_and_so_are_its_dependents(project):
    """The registry holds every tag, but base's carries another image's bytes: base and its dependents build."""
    loaded, inputs = inputs_for(project)
    held = {name: "sha256:" + "e" * 64 for name in inputs}
    why = "the registry's tag holds sha256:eee..., built from other inputs (label ...): rebuilt, not trusted"
    result = plan.make_plan(loaded, inputs, {EXTERNAL: PIN}, held, None, {"base": why})
    assert {i.name: i.action for i in result.images} == {n: "build" for n in inputs}
    assert result.get("base").reasons == (why,)
    assert result.get("training").reasons == ("its base image base is being rebuilt",)
    only_upload = plan.make_plan(loaded, inputs, {EXTERNAL: PIN}, held, None, {"upload": why})
    assert {i.name: i.action for i in only_upload.images} == {
        "base": "reuse",
        "download": "reuse",
        "training": "reuse",
        "upload": "build",
    }
