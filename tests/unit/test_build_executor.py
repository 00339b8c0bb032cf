"""`buildtool build` end to end through the CLI, on a fake engine and a fake registry (tests/fake_engine.py).

The engine pushes (push_with = "engine"), so every engine call is the docker SDK's, and what the
registry serves after a push is the fake registry's answer. An image is pushed to its staging
repository (`<repository>/staging:unchecked-...`) while its import check runs; only then is its
manifest copied under the content tag (blob mounts, manifest PUT) and the staging manifest deleted.
Each test states an outcome a user sees: exit code, error line, the image map, which builds and
pushes reached the engine, and which tags the registry ends up holding.
"""

from __future__ import annotations

import os
import subprocess
import sys

import yaml

from buildtool.lock import image_map
from buildtool.push.registry import Registry
from buildtool.reference import Reference, hold_tag, parse

from ..conftest import REPO
from ..fake_engine import CUT, FakeEngine, image_name, probe_output, sha256
from .conftest import FakeSetup

STEPS = {"download_training_dataset": "download", "training": "training", "upload_model": "upload"}


def built(engine: FakeEngine) -> list[str]:
    return [image_name(b.tag) for b in engine.builds]


def pushed(engine: FakeEngine) -> list[str]:
    return [image_name(p) for p in engine.pushes]


def content_tags(fake: FakeSetup, name: str) -> list[str]:
    return sorted(fake.registry.tags(f"t/{name}"))


def staging_tags(fake: FakeSetup, name: str) -> list[str]:
    return sorted(fake.registry.tags(f"t/{name}/staging"))


def error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("buildtool: error: ")]
    assert len(lines) == 1, err
    assert "Traceback" not in err and "unexpected" not in err
    return lines[0]


def test_build_push_pins_what_the_registry_serves_and_a_second_run_reuses(fake: FakeSetup) -> None:
    (fake.root / "images" / "training" / "key.secret").write_text("not for the engine\n")
    code, out, err = fake.cli("build", "--push")
    assert code == 0, err
    assert sorted(built(fake.engine)) == ["base", "download", "training", "upload"]
    assert built(fake.engine)[0] == "base"  # dependents wait for their base
    lock = image_map.load(fake.image_map)
    for name in ("base", "download", "training", "upload"):
        ref = lock.images[name].reference
        tagged, digest = ref.split("@")
        assert tagged.startswith(f"{fake.registry.host}/t/{name}:in-")
        assert fake.registry.served(f"t/{name}", tagged.rsplit(":", 1)[1]) == digest
    assert {step: image_name(ref) for step, ref in lock.steps.items()} == STEPS
    assert lock.steps["training"] == lock.images["training"].reference
    # The base is built on the pinned external base; dependents on the base's pinned reference.
    args = {image_name(b.tag): b.buildargs for b in fake.engine.builds}
    external = f"{fake.registry.host}/lib/python:3.11@" + str(fake.registry.served("lib/python", "3.11"))
    assert args["base"]["BASE_IMAGE"] == external
    assert args["training"] == {"BASE_IMAGE": lock.images["base"].reference, "EXTRA": "1"}
    labels = {image_name(b.tag): b.labels for b in fake.engine.builds}
    assert labels["upload"] == {"buildtool.inputs-digest": lock.images["upload"].inputs_digest}
    # What the engine received is what was hashed: .dockerignore'd files stay home.
    training = next(b for b in fake.engine.builds if image_name(b.tag) == "training")
    assert training.files == [".dockerignore", "Dockerfile", "requirements.txt"]
    # Every step image was probed before its push, in a container that was removed.
    probed = sorted(image_name(c.image) for c in fake.engine.containers.values())
    assert probed == ["download", "training", "upload"]
    assert all(c.removed and "IMPORT-PROBE" in " ".join(c.command) for c in fake.engine.containers.values())
    assert f"{fake.image_map} updated" in out
    # Each image went through its staging repository: pushed there, copied under its content tag (its blobs
    # mounted, not uploaded again), then the staging manifest deleted and the engine's staging tag removed.
    for name in ("base", "download", "training", "upload"):
        tag = lock.images[name].reference.split("@")[0].rsplit(":", 1)[1]
        digest = lock.images[name].reference.split("@")[1]  # held by its own digest tag too (garbage collection)
        assert content_tags(fake, name) == sorted([tag, hold_tag(digest)]) and staging_tags(fake, name) == []
        assert fake.registry.served(f"t/{name}", hold_tag(digest)) == digest
        assert any(m.startswith(f"t/{name}/staging -> t/{name} ") for m in fake.registry.mounts)
    assert sorted(image_name(p) for p in fake.engine.pushes) == ["base", "download", "training", "upload"]
    assert all("/staging:unchecked-" in p for p in fake.engine.pushes)
    assert sorted(fake.engine.untagged) == sorted(fake.engine.pushes)
    before = fake.image_map.read_bytes()

    fake.engine.builds.clear()
    fake.engine.pushes.clear()
    code, out, err = fake.cli("build", "--push")
    assert code == 0, err
    assert built(fake.engine) == [] and pushed(fake.engine) == []
    assert "registry already holds" in out and f"{fake.image_map} unchanged" in out
    assert fake.image_map.read_bytes() == before


def test_a_push_whose_digest_the_registry_does_not_serve_fails_and_keeps_the_map(fake: FakeSetup) -> None:
    fake.image_map.write_text("previous map\n")
    other = sha256(b"a manifest the registry never stored")
    fake.engine.push_reports["training"] = other
    code, _, err = fake.cli("build", "--push")
    assert code == 7
    line = error_line(err)
    assert "/t/training:in-" in line and "/t/training/staging:unchecked-" in line
    assert f"@{other}" in line and "answered 404 for the manifest" in line
    assert fake.image_map.read_text() == "previous map\n"
    assert content_tags(fake, "training") == [] and staging_tags(fake, "training") == []


def test_a_push_the_registry_holds_nothing_for_fails(fake: FakeSetup) -> None:
    digest = sha256(b"pushed elsewhere")
    fake.engine.push_streams["upload"] = [{"status": "Pushed", "id": "aaaa"}, {"aux": {"Tag": "x", "Digest": digest}}]
    code, _, err = fake.cli("build", "--push")
    assert code == 7
    line = error_line(err)
    assert "/t/upload:in-" in line and f"@{digest}" in line and "answered 404 for the manifest" in line
    assert not fake.image_map.exists() and content_tags(fake, "upload") == []


def test_a_content_tag_the_registry_serves_another_digest_for_fails(fake: FakeSetup) -> None:
    """The copy succeeded, but the tag then points elsewhere (moved by someone else): the map must not pin it."""
    moved = sha256(b"someone else's manifest")
    fake.registry.moved_after_put["t/download"] = moved
    code, _, err = fake.cli("build", "--push")
    assert code == 7
    line = error_line(err)
    assert "/t/download:in-" in line and f"but the registry serves {moved}" in line
    assert not fake.image_map.exists() and staging_tags(fake, "download") == []


def test_sources_edited_after_the_plan_are_not_built_under_the_planned_tag(fake: FakeSetup) -> None:
    requirements = fake.root / "images" / "training" / "requirements.txt"

    def edit_while_base_builds(tag: str) -> None:
        if image_name(tag) == "base":
            requirements.write_text("numpy==2\n")

    fake.engine.on_build = edit_while_base_builds
    code, _, err = fake.cli("build", "--push", "--jobs", "1")
    assert code == 6
    line = error_line(err)
    assert "image training" in line and "changed since the build was planned" in line
    assert "training" not in built(fake.engine) and "training" not in pushed(fake.engine)
    assert not fake.image_map.exists()


def test_a_selected_build_keeps_the_map_entries_of_the_images_not_selected(fake: FakeSetup) -> None:
    assert fake.cli("build", "--push")[0] == 0
    before = image_map.load(fake.image_map)
    (fake.root / "images" / "upload" / "app.py").write_text("print('new')\n")
    fake.engine.builds.clear()
    code, out, err = fake.cli("build", "--push", "upload")
    assert code == 0, err
    assert built(fake.engine) == ["upload"]  # base is reused, download and training are not selected
    after = image_map.load(fake.image_map)
    assert set(after.images) == {"base", "download", "training", "upload"}
    for name in ("base", "download", "training"):
        assert after.images[name] == before.images[name]
    assert after.images["upload"].reference != before.images["upload"].reference
    assert after.steps == {**before.steps, "upload_model": after.images["upload"].reference}
    assert yaml.safe_load(fake.image_map.read_text())["steps"] == dict(after.steps)


def test_a_selected_build_without_an_earlier_map_is_refused(fake: FakeSetup) -> None:
    code, _, err = fake.cli("build", "--push", "upload")
    assert code == 3
    assert "no earlier entry for image 'download'" in error_line(err)
    assert not fake.image_map.exists()


def test_a_failed_build_names_the_step_and_shows_the_log_tail(fake: FakeSetup) -> None:
    fake.engine.build_streams["training"] = FakeEngine.build_failing(
        "2/3 : RUN pip install nope", "ERROR: No matching distribution found for nope"
    )
    code, _, err = fake.cli("build", "--push")
    assert code == 6
    assert "buildtool: error: build of " in err and "/t/training:in-" in err
    assert "failed at step 2/3 (RUN pip install nope): The command '/bin/sh -c ...' returned a non-zero code: 1" in err
    assert "--- last lines of the build log ---" in err and "ERROR: No matching distribution found for nope" in err
    assert "training" not in pushed(fake.engine) and not fake.image_map.exists()


def test_an_error_inside_the_push_stream_fails_the_build_with_exit_7(fake: FakeSetup) -> None:
    fake.engine.push_streams["upload"] = [
        {"status": "Preparing", "id": "aaaa"},
        {
            "errorDetail": {"message": "unauthorized: authentication required"},
            "error": "unauthorized: authentication required",
        },
    ]
    code, _, err = fake.cli("build", "--push")
    assert code == 7
    line = error_line(err)
    assert "/t/upload/staging:unchecked-" in line and "unauthorized: authentication required" in line
    assert "docker login" in line
    assert not fake.image_map.exists() and content_tags(fake, "upload") == []


def test_a_push_stream_cut_midway_fails_the_build(fake: FakeSetup) -> None:
    fake.engine.push_streams["download"] = [
        {"status": "Preparing", "id": "aaaa"},
        {"status": "Pushing", "id": "aaaa"},
        CUT,
    ]
    code, _, err = fake.cli("build", "--push")
    assert code == 7
    assert "/t/download/staging:unchecked-" in error_line(err)
    assert not fake.image_map.exists() and content_tags(fake, "download") == []


def test_a_step_import_missing_from_its_image_fails_before_the_push(fake: FakeSetup) -> None:
    missing = {"tensorflow": "ModuleNotFoundError: No module named 'tensorflow'"}
    fake.engine.call_results["training"] = (0, probe_output(missing))
    code, _, err = fake.cli("build", "--push", "--jobs", "1")
    assert code == 6
    assert "step training imports tensorflow: not installed in image training" in error_line(err)
    # The push to the staging repository runs beside the check; a failed check leaves nothing of it.
    assert "training" in built(fake.engine)
    assert content_tags(fake, "training") == [] and staging_tags(fake, "training") == []
    assert not fake.image_map.exists()


def test_broken_requirements_in_an_image_fail_the_build(fake: FakeSetup) -> None:
    broken = "numpy 1 has requirement x, you have y\n"
    fake.engine.call_results["upload"] = (0, probe_output(pip_code=1, pip_output=broken))
    code, _, err = fake.cli("build", "--push")
    assert code == 6
    assert "image upload: `pip check` found broken requirements: numpy 1 has requirement x" in error_line(err)


def test_an_image_without_python_fails_the_import_check(fake: FakeSetup) -> None:
    fake.engine.call_results["download"] = (127, 'exec: "python3": executable file not found in $PATH\n')
    code, _, err = fake.cli("build", "--push")
    assert code == 6
    assert "the import check printed no result" in error_line(err) and "python3" in err


def test_build_without_push_checks_and_leaves_the_registry_and_map_alone(fake: FakeSetup) -> None:
    code, out, err = fake.cli("build")
    assert code == 0, err
    assert sorted(built(fake.engine)) == ["base", "download", "training", "upload"]
    assert pushed(fake.engine) == [] and not fake.image_map.exists()
    assert len(fake.engine.containers) == 3 and "built locally" in out


def test_dry_run_plans_without_the_engine(fake: FakeSetup) -> None:
    code, out, _ = fake.cli("build", "--push", "--dry-run")
    assert code == 0
    assert fake.engine.calls == [] and not fake.image_map.exists()
    assert out.splitlines()[0].startswith(f"build  base  {fake.registry.host}/t/base:in-")


def test_an_unreachable_engine_is_exit_5(fake: FakeSetup, monkeypatch) -> None:
    fake.engine.close()
    code, _, err = fake.cli("build")
    assert code == 5
    assert "no Docker engine answers" in error_line(err) and "DOCKER_HOST" in err


def test_a_base_image_missing_from_the_registry_is_exit_8(fake: FakeSetup) -> None:
    text = fake.project.read_text().replace("/lib/python:3.11", "/lib/python:3.99")
    fake.project.write_text(text)
    code, _, err = fake.cli("build", "--push")
    assert code == 8
    assert f"base image {fake.registry.host}/lib/python:3.99 not found" in error_line(err)
    assert fake.engine.calls == []


# -- the executor: on the first failure, nothing new starts -----------------------------------------------------

INDEPENDENT = """
[tool.buildtool.images.{name}]
context = "images/{name}"
"""


def add_independent_images(fake: FakeSetup, *names: str) -> None:
    """Images on the external base: nothing orders them against each other or against `base`."""
    with fake.project.open("a") as handle:
        for name in names:
            context = fake.root / "images" / name
            context.mkdir(parents=True)
            (context / "Dockerfile").write_text(f"ARG BASE_IMAGE\nFROM ${{BASE_IMAGE}}\nLABEL image={name}\n")
            (context / ".dockerignore").write_text("*\n!Dockerfile\n")
            handle.write(INDEPENDENT.format(name=name))


def run_in_subprocess(fake: FakeSetup, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI in a child process, so that an executor that never stops fails the test instead of hanging it."""
    env = {**os.environ, "DOCKER_HOST": fake.engine.host, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "buildtool", "--config", str(fake.project), *args],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
        cwd=REPO,
    )


def test_with_one_job_nothing_builds_after_the_first_failure(fake: FakeSetup) -> None:
    add_independent_images(fake, "aaa", "bbb")
    fake.engine.build_streams["aaa"] = FakeEngine.build_failing("2/3 : RUN false", "no")
    done = run_in_subprocess(fake, "build", "--push", "--jobs", "1")
    assert done.returncode == 6, done.stderr
    assert "/t/aaa:in-" in error_line(done.stderr)
    assert built(fake.engine) == ["aaa"]  # base and bbb were ready, but nothing starts after a failure
    assert pushed(fake.engine) == [] and not fake.image_map.exists()


def test_with_two_jobs_the_running_build_finishes_but_its_dependents_never_start(fake: FakeSetup) -> None:
    """base still builds when aaa fails: base ends, but neither its dependents nor bbb (waiting for a free
    worker, its base ready) start."""
    add_independent_images(fake, "aaa", "bbb")
    fake.engine.build_streams["aaa"] = FakeEngine.build_failing("2/3 : RUN false", "no")
    fake.engine.build_delays["base"] = 1.0  # still building when aaa fails
    done = run_in_subprocess(fake, "build", "--push", "--jobs", "2")
    assert done.returncode == 6, done.stderr
    assert "/t/aaa:in-" in error_line(done.stderr)
    assert sorted(built(fake.engine)) == ["aaa", "base"]
    assert not {"download", "training", "upload", "bbb"} & set(built(fake.engine) + pushed(fake.engine))
    assert not fake.image_map.exists()


def test_a_content_tag_moved_to_another_images_bytes_is_rebuilt_not_reused(fake: FakeSetup) -> None:
    """Someone PUT upload's manifest under download's content tag: the label tells, download is built again."""
    assert fake.cli("build", "--push")[0] == 0
    lock = image_map.load(fake.image_map)
    download, upload = parse(lock.images["download"].reference), parse(lock.images["upload"].reference)
    client = Registry(timeout=5)
    try:
        client.copy(upload, Reference(download.domain, download.path, download.tag))
    finally:
        client.close()
    fake.engine.builds.clear()
    code, out, err = fake.cli("build", "--push")
    assert code == 0, err
    assert built(fake.engine) == ["download"]
    assert (
        f"the registry's tag holds {upload.digest}, built from other inputs (label buildtool.inputs-digest="
        f"{lock.images['upload'].inputs_digest}): rebuilt, not trusted"
    ) in out
    assert f"replace {upload.digest} under {download.tag}: it was built from other inputs" in out + err
    rebuilt = image_map.load(fake.image_map).images["download"].reference
    assert upload.digest not in rebuilt
    assert fake.registry.served(download.path, str(download.tag)) == parse(rebuilt).digest


def test_a_build_of_the_same_inputs_already_under_the_content_tag_is_adopted(fake: FakeSetup) -> None:
    """Another runner pushed the same inputs while this one built: its image is adopted, its tag left alone."""
    theirs: dict[str, str] = {}

    def other_runner_pushes(tag: str) -> None:
        if image_name(tag) == "upload" and not theirs:
            labels = next(b.labels for b in fake.engine.builds if image_name(b.tag) == "upload")
            path, _, content_tag = tag.partition("/")[2].rpartition(":")
            theirs["digest"] = fake.registry.store(path, content_tag, (3, 4), labels=labels)

    fake.engine.on_build = other_runner_pushes
    code, out, err = fake.cli("build", "--push")
    assert code == 0, err
    pinned = parse(image_map.load(fake.image_map).images["upload"].reference)
    assert pinned.digest == theirs["digest"]
    assert "adopt " in out + err and "the registry already holds a build of the same inputs" in out + err
    assert fake.registry.served(pinned.path, hold_tag(theirs["digest"])) == theirs["digest"]


def test_a_reused_image_without_its_digest_tag_gets_it(fake: FakeSetup) -> None:
    """An image pushed before digest tags existed: the next build --push reuses it and tags it by its digest."""
    assert fake.cli("build", "--push")[0] == 0
    lock = image_map.load(fake.image_map)
    pins = {name: parse(entry.reference) for name, entry in lock.images.items()}
    for pin in pins.values():
        fake.registry.forget(pin.path, hold_tag(str(pin.digest)))
    fake.engine.builds.clear()
    code, out, err = fake.cli("build", "--push")
    assert code == 0, err
    assert built(fake.engine) == []
    for name, pin in pins.items():
        assert fake.registry.served(pin.path, hold_tag(str(pin.digest))) == pin.digest, name
        assert f"tagged {pin.repository}:sha256-" in out + err
    assert image_map.load(fake.image_map) == lock
