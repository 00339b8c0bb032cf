"""The guarantees the README makes, each as a test that fails when its code is made wrong.

- compile checks every image of the compiled workflow against the map before replacing the output;
- the map (and any result file) is replaced atomically: a failed or concurrent write never shows a torn file;
- a map entry whose reference does not carry its inputs tag is stale;
- verify asks the registry for every pinned image and reports what it does not serve.
The executor, the map it writes and the push-digest check are covered in test_build_executor.py.
"""

from __future__ import annotations

import os
import stat
import threading

import pytest
import yaml

from buildtool import config
from buildtool.errors import CompileError, StaleMapError
from buildtool.gate import compiler, verify
from buildtool.gate.verify.checks import external_repository
from buildtool.lock import image_map, staleness
from buildtool.push.registry import Registry
from buildtool.reference import hold_tag, parse
from buildtool.util import fsutil

from ..fake_engine import FakeRegistry
from ..helpers import write_lock
from .conftest import FakeSetup

OTHER_PIN = "127.0.0.1:5000/t/training:in-0000000000000000@sha256:" + "9" * 64


# -- compile: the output is checked against the map before it replaces anything ----------------------------------

ROGUE = """\
from pipeline.training_pipeline import make_pipeline as real


def make_pipeline(img_name_map, image_pull_policy="IfNotPresent", **settings):
    images = dict(img_name_map)
    images[{step!r}] = {image}
    return real(images, image_pull_policy=image_pull_policy, **settings)
"""


@pytest.mark.parametrize(
    "case, step, image, problem",
    [
        (
            "other_pin",
            "training",
            repr(OTHER_PIN),
            f"template training: container.image: {OTHER_PIN} differs from the map's",
        ),
        (
            "unpinned",
            "upload_model",
            repr("127.0.0.1:5000/t/upload:latest"),
            "template upload-model: container.image: 127.0.0.1:5000/t/upload:latest is not pinned by digest",
        ),
        (
            "swapped",
            "download_training_dataset",
            'img_name_map["training"]',
            "template download-training-dataset: container.image: 127.0.0.1:5000/t/training:in-",
        ),
    ],
)
def test_compile_refuses_a_pipeline_that_runs_other_images_than_the_map(project, case, step, image, problem):
    """A factory that ignores img_name_map for one step: the compiled workflow must not replace the output."""
    loaded, _ = write_lock(project)
    module = f"rogue_{case}"
    (project.parent / f"{module}.py").write_text(ROGUE.format(step=step, image=image))
    project.write_text(
        project.read_text().replace(
            'pipeline = "pipeline.training_pipeline:make_pipeline"', f'pipeline = "{module}:make_pipeline"'
        )
    )
    rogue = config.load(project)
    rogue.output.write_text("previous output\n")
    with pytest.raises(CompileError) as caught:
        compiler.compile_pipeline(rogue, rogue.output)
    message = str(caught.value)
    assert message.startswith(f"compiled pipeline is not pinned as {rogue.image_map} says: ")
    assert problem in message
    assert "component_spec annotation" in message  # kfp's copy of the image is checked too
    problems = message.removeprefix(f"compiled pipeline is not pinned as {rogue.image_map} says: ").split("; ")
    assert len(problems) == 2 and all(p.startswith("template ") for p in problems)  # the container and kfp's copy
    assert rogue.output.read_text() == "previous output\n"
    assert [p.name for p in project.parent.iterdir() if p.name.startswith(".pipeline")] == []


# -- atomic replacement ----------------------------------------------------------------------------------------

WRITERS = [pytest.param(fsutil.write_atomic, id="fsutil"), pytest.param(image_map.write_atomic, id="image_map")]


@pytest.mark.parametrize("write", WRITERS)
def test_a_write_that_fails_midway_leaves_the_old_bytes_and_no_temp_file(tmp_path, write):
    path = tmp_path / "image_map.yaml"
    path.write_bytes(b"steps: {old: 1}\n")
    with pytest.raises(UnicodeEncodeError):
        write(path, "steps:\n  new: 'x'\n" * 1000 + "\ud800")  # a lone surrogate: no encoding can write it
    assert path.read_bytes() == b"steps: {old: 1}\n"
    assert os.listdir(tmp_path) == ["image_map.yaml"]


@pytest.mark.parametrize("write", WRITERS)
def test_a_reader_never_sees_a_torn_file(tmp_path, write):
    """Rename-over: a reader sees the whole old text or the whole new one, never an empty or partial file."""
    path = tmp_path / "image_map.yaml"
    texts = ["a" * (4 << 20) + "\n", "b" * (4 << 20) + "\n"]
    write(path, texts[1])
    torn: list[int] = []
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            text = path.read_text()
            if text not in texts:
                torn.append(len(text))

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for n in range(12):
            assert write(path, texts[n % 2]) is True
    finally:
        stop.set()
        reader.join()
    assert torn == []
    assert os.listdir(tmp_path) == ["image_map.yaml"]


@pytest.mark.parametrize("write", WRITERS)
def test_an_open_reader_keeps_the_version_it_opened(tmp_path, write):
    path = tmp_path / "image_map.yaml"
    write(path, "old\n")
    with open(path) as before:
        assert write(path, "new\n") is True
        assert before.read() == "old\n"
    assert path.read_text() == "new\n"
    assert stat.S_IMODE(os.stat(path).st_mode) == fsutil.readable_mode()  # readable as a plain write makes it


def test_atomic_output_leaves_nothing_behind_when_interrupted(tmp_path):
    path = tmp_path / "pipeline.yaml"
    path.write_text("old\n")
    with pytest.raises(KeyboardInterrupt):
        with fsutil.atomic_file(path, "w") as handle:
            handle.write("half of the new")
            raise KeyboardInterrupt
    assert path.read_text() == "old\n" and os.listdir(tmp_path) == ["pipeline.yaml"]


# -- staleness: the reference must carry the inputs tag --------------------------------------------------------


def retag(lock: image_map.ImageMap, name: str, step: str | None, reference: str) -> image_map.ImageMap:
    old = lock.images[name]
    images = {**lock.images, name: image_map.LockedImage(reference, old.inputs_digest, old.base, old.inputs)}
    steps = {**lock.steps, step: reference} if step else dict(lock.steps)
    return image_map.ImageMap(steps=steps, images=images)


@pytest.mark.parametrize("name, step", [("training", "training"), ("base", None)])
def test_a_reference_that_does_not_carry_the_inputs_tag_is_stale(project, name, step):
    loaded, lock = write_lock(project)
    tag = lock.images[name].reference.split("@")[0].rsplit(":", 1)[1]
    wrong = lock.images[name].reference.replace(f":{tag}@", ":in-0123456789abcdef@")
    loaded.image_map.write_text(image_map.render(retag(lock, name, step, wrong)))
    stale = staleness.stale_images(loaded, image_map.load(loaded.image_map))
    assert stale == {name: [f"reference {wrong} does not carry the inputs tag {tag}"]}
    with pytest.raises(StaleMapError, match=f"image {name}.*does not carry the inputs tag {tag}"):
        staleness.require_fresh(loaded, image_map.load(loaded.image_map))


def test_a_tag_that_only_ends_like_the_inputs_tag_is_stale(project):
    loaded, lock = write_lock(project)
    reference = lock.images["upload"].reference
    tag = reference.split("@")[0].rsplit(":", 1)[1]
    wrong = reference.replace(f":{tag}@", f":x{tag}@")
    loaded.image_map.write_text(image_map.render(retag(lock, "upload", "upload_model", wrong)))
    assert "upload" in staleness.stale_images(loaded, image_map.load(loaded.image_map))


def test_check_exits_3_on_a_reference_whose_tag_is_not_its_inputs_tag(project, capsys):
    """A tag that is not the one of the recorded inputs digest is a hand edit: the lock is not bound (exit 3)."""
    from buildtool import cli

    loaded, lock = write_lock(project)
    wrong = lock.images["download"].reference.split(":in-")[0] + ":in-0123456789abcdef@sha256:" + "7" * 64
    loaded.image_map.write_text(image_map.render(retag(lock, "download", "download_training_dataset", wrong)))
    assert cli.main(["--config", str(project), "check"]) == 3
    err = capsys.readouterr().err
    expected = lock.images["download"].reference.split("@")[0]
    assert err.startswith("buildtool: error: ") and "images.download.reference" in err
    assert f"not bound to its image: expected {expected}@sha256:<64 hex>" in err


# -- verify: the registry is asked -----------------------------------------------------------------------------


def workflow_of(*images: str) -> dict:
    return {
        "kind": "Workflow",
        "spec": {"templates": [{"name": f"step-{n}", "container": {"image": image}} for n, image in enumerate(images)]},
    }


@pytest.fixture
def fake_registry():
    registry = FakeRegistry()
    yield registry
    registry.close()


def test_verify_reports_each_pinned_image_the_registry_does_not_serve(fake_registry):
    held = fake_registry.store("t/training", "in-1")
    present = f"{fake_registry.host}/t/training:in-1@{held}"
    absent = f"{fake_registry.host}/t/training:in-1@sha256:" + "0" * 64
    moved = f"{fake_registry.host}/t/upload@sha256:" + "5" * 64
    fake_registry.store("t/upload", "x")
    fake_registry.serve_instead("t/upload", "sha256:" + "5" * 64, held)
    client = Registry(timeout=5)
    try:
        assert verify.registry_problems(workflow_of(present, present), client) == []
        assert verify.registry_problems(workflow_of(present, absent, moved, "unpinned:latest"), client) == [
            f"{absent}: not in the registry",
            f"{moved}: registry serves {held}",
        ]
    finally:
        client.close()
    # Each distinct pinned image was asked for by its digest, and the one found by its tag too; the unpinned one
    # is pin_problems' business.
    assert set(fake_registry.heads) == {
        f"t/training:{held}",
        "t/training:in-1",
        "t/training:sha256:" + "0" * 64,
        "t/upload:sha256:" + "5" * 64,
    }


INPUTS = "sha256:" + "1" * 64


def test_verify_binds_a_pin_to_its_tag_or_digest_tag_and_to_its_inputs_label(fake_registry):
    """The tag must serve the digest, or the digest tag hold it (a pin safe from garbage collection); the image's
    config must carry the map's inputs digest."""
    ours = fake_registry.store("t/training", "in-1", labels={"buildtool.inputs-digest": INPUTS})
    pinned = f"{fake_registry.host}/t/training:in-1@{ours}"
    client = Registry(timeout=5)
    try:
        assert verify.registry_problems(workflow_of(pinned), client, {pinned: INPUTS}) == []
        other = "sha256:" + "2" * 64
        (problem,) = verify.registry_problems(workflow_of(pinned), client, {pinned: other})
        assert problem == (
            f"{pinned}: its image carries buildtool.inputs-digest={INPUTS}, not the map's inputs "
            f"digest {other}: these bytes were not built from what the lock records"
        )
        # The tag moved to another build: the digest tag still holds the pin.
        theirs = fake_registry.store("t/training", "in-1", (7, 8), labels={"buildtool.inputs-digest": INPUTS})
        (problem,) = verify.registry_problems(workflow_of(pinned), client, {pinned: INPUTS})
        assert problem.startswith(f"{pinned}: tag in-1 serves {theirs} and no tag sha256-")
        assert "garbage collection may delete it" in problem
        client.add_tag(parse(pinned), hold_tag(ours))
        assert verify.registry_problems(workflow_of(pinned), client, {pinned: INPUTS}) == []
    finally:
        client.close()


def test_build_compile_verify_and_a_registry_that_lost_an_image(fake: FakeSetup) -> None:
    """The whole flow on the fakes (kfp's real compiler): verify passes, then fails once the registry loses one."""
    assert fake.cli("build", "--push")[0] == 0
    code, out, err = fake.cli("compile")
    assert code == 0, err
    code, out, err = fake.cli("verify")
    assert code == 0, err
    assert "every image is pinned, matches image_map.yaml and exists in the registry" in out
    lock = image_map.load(fake.image_map)
    reference = lock.steps["training"]
    fake.registry.forget("t/training", reference.split("@")[1])
    code, out, err = fake.cli("verify")
    assert code == 10
    (line,) = err.splitlines()
    assert line == f"buildtool: error: {fake.root / 'pipeline.yaml'}: 1 problem(s): {reference}: not in the registry"
    assert fake.cli("verify", "--offline")[0] == 0
    workflow = yaml.safe_load((fake.root / "pipeline.yaml").read_text())
    assert verify.pin_problems(workflow, lock.steps) == []


def test_an_untagged_pin_names_its_tag_repository_and_the_fix_and_third_party_tags_are_theirs(fake_registry):
    """A pin no tag holds is named with what its tag serves (or that the tag is gone), the digest tag it lacks, its
    repository and the fix; given the map's inputs, an image buildtool did not build keeps its publisher's tags."""
    ours = fake_registry.store("t/training", "in-1", labels={"buildtool.inputs-digest": INPUTS})
    pinned = f"{fake_registry.host}/t/training:in-1@{ours}"
    third = fake_registry.store("lib/report", "1.0")
    report = f"{fake_registry.host}/lib/report:1.0@{third}"
    fake_registry.store("lib/report", "1.0", (3, 4))  # the publisher moved its tag
    fake_registry.forget("t/training", "in-1")
    fix = (
        "the pin is untagged, so the registry's garbage collection may delete it; rebuild with `buildtool build --push`"
    )
    client = Registry(timeout=5)
    try:
        (problem,) = verify.registry_problems(workflow_of(pinned, report), client, {pinned: INPUTS})
        assert problem.startswith(f"{pinned}: tag in-1 is not in the registry and no tag {hold_tag(ours)[:19]}… ")
        assert problem.endswith(f"holds the pinned digest in {fake_registry.host}/t/training: {fix}")
        theirs = fake_registry.store("t/training", "in-1", (7, 8), labels={"buildtool.inputs-digest": INPUTS})
        (problem,) = verify.registry_problems(workflow_of(pinned, report), client, {pinned: INPUTS})
        assert problem.startswith(f"{pinned}: tag in-1 serves {theirs} and no tag {hold_tag(ours)[:19]}… ")
        # Without the map's inputs, every pinned image is held to buildtool's tagging, the third-party one too.
        problems = verify.registry_problems(workflow_of(pinned, report), client)
        assert [p.split(": tag ")[0] for p in problems] == sorted([pinned, report])
    finally:
        client.close()


# -- verify: which step a template runs -------------------------------------------------------------------------

SPEC = "pipelines.kubeflow.org/component_spec"


def annotated(name: object, spec: object, **fields: object) -> dict:
    return {"name": name, "metadata": {"annotations": {SPEC: spec}}, **fields}


def program(*functions: str) -> dict:
    return {
        "image": "x",
        "command": ["sh", "-ec", "program"],
        "args": [f"_outputs = {f}(**_parsed_args)" for f in functions],
    }


@pytest.mark.parametrize(
    "template, step",
    [
        pytest.param(annotated("any-name", '{"name": "Train model"}'), "train_model", id="by-component"),
        pytest.param({"name": "train-model"}, "train_model", id="by-template-name"),
        pytest.param({"name": "train-model", "metadata": "x"}, "train_model", id="metadata-not-mapping"),
        pytest.param({"name": "train-model", "metadata": {"annotations": [1]}}, "train_model", id="annotations-list"),
        pytest.param(annotated("train-model", 5), "train_model", id="spec-not-text"),
        pytest.param(annotated("train-model", "{not json"), "train_model", id="spec-not-json"),
        pytest.param(annotated("train-model", "[1]"), "train_model", id="spec-a-list"),
        pytest.param(annotated("train-model", '{"name": 5}'), "train_model", id="spec-name-not-text"),
        pytest.param(
            annotated("x", '{"name": "Renamed"}', container=program("train_model")), "train_model", id="program-call"
        ),
        pytest.param(
            annotated("x", '{"name": "Renamed"}', container={"command": [program("train_model")["args"][0]]}),
            "train_model",
            id="program-call-in-command",
        ),
        pytest.param(
            annotated("x", '{"name": "Renamed"}', container=program("train_model", "other")), None, id="two-calls"
        ),
        pytest.param(annotated("x", '{"name": "Renamed"}', container=program("other")), None, id="no-step-called"),
        pytest.param(annotated("train-model", '{"name": "Renamed"}'), None, id="renamed-without-program"),
        pytest.param(annotated("x", '{"name": "Renamed"}', container="text"), None, id="container-not-mapping"),
        pytest.param({"name": 5}, None, id="name-not-text"),
    ],
)
def test_template_steps_reads_the_component_then_the_program_then_the_name(template, step):
    workflow = {"kind": "Workflow", "spec": {"templates": [template, "not a template"]}}
    found = verify.template_steps(workflow, ["train_model", "upload"])
    assert found == ({template["name"]: step} if step else {})


@pytest.mark.parametrize("count, read", [(verify.MAX_TEMPLATES, True), (verify.MAX_TEMPLATES + 1, False)])
def test_template_steps_reads_up_to_the_template_cap(count, read):
    templates = [{"name": "upload"}] + [{"name": f"t{n}"} for n in range(count - 1)]
    found = verify.template_steps({"kind": "Workflow", "spec": {"templates": templates}}, ["upload"])
    assert found == ({"upload": "upload"} if read else {})


@pytest.mark.parametrize(
    "image, listed",
    [
        ("r.example/lib/report@sha256:" + "7" * 64, True),
        ("r.example/lib/report:1.0@sha256:" + "7" * 64, True),
        ("r.example/lib/report:1.0", False),  # listed, but not pinned
        ("r.example/lib/report", False),
        (None, False),
        ("r.example/lib/other@sha256:" + "7" * 64, False),
    ],
)
def test_an_external_image_is_pinned_and_of_a_listed_repository(image, listed):
    assert external_repository(image, ["r.example/lib/report", "r.example/lib/tools:2"]) is listed


def test_template_steps_reads_past_what_is_not_a_template():
    templates = ["not a template", {"name": 5}, {"metadata": {}}, {"name": "upload"}]
    assert verify.template_steps({"kind": "Workflow", "spec": {"templates": templates}}, ["upload"]) == {
        "upload": "upload"
    }
