"""Compile, check and verify against a lock written for the working tree: kfp's real compiler, no engine."""

import json

import pytest
import yaml

from buildtool import cli, config
from buildtool.errors import CompileError, ConfigError, ImageMapError, RegistryError, StaleMapError, VerifyError
from buildtool.gate import compiler, verify
from buildtool.lock import image_map, staleness

from ..helpers import CLI_WITH_QUICK_RETRIES, refused_port, write_lock


def test_compile_pins_every_image_as_the_map_says(project):
    loaded, lock = write_lock(project)
    assert compiler.compile_pipeline(loaded, loaded.output) == []
    workflow = yaml.safe_load(loaded.output.read_text())
    seen = {}
    for template in workflow["spec"]["templates"]:
        if "container" in template:
            step = template["name"].replace("-", "_")
            spec = json.loads(template["metadata"]["annotations"][verify.COMPONENT_SPEC])
            assert template["container"]["image"] == lock.steps[step]
            assert spec["implementation"]["container"]["image"] == lock.steps[step]
            assert template["container"]["imagePullPolicy"] == "IfNotPresent"
            assert template["container"]["resources"] == {
                "limits": {"cpu": "0.5", "memory": "4000Mi"},
                "requests": {"cpu": "0.5", "memory": "4000Mi"},
            }
            assert template["metadata"]["labels"]["{{inputs.parameters.training_task_uid}}"] == step
            assert template["metadata"]["labels"]["pipelines.kubeflow.org/enable_caching"] == "false"
            seen[step] = True
    assert set(seen) == set(lock.steps)
    params = {p["name"]: p.get("value") for p in workflow["spec"]["arguments"]["parameters"]}
    assert params["secret_key"] is None and params["access_key"] is None
    assert params["batch_size"] == "4" and params["epochs"] == "1"
    assert verify.pin_problems(workflow, lock.steps) == []


def test_compile_refuses_missing_incomplete_and_unpinned_maps_and_keeps_old_output(project):
    loaded, lock = write_lock(project)
    loaded.output.write_text("previous output\n")
    loaded.image_map.unlink()
    with pytest.raises(ImageMapError, match="not found"):
        compiler.compile_pipeline(loaded, loaded.output)
    text = image_map.render(lock)
    loaded.image_map.write_text(text.replace("  upload_model:", "  other_step:"))
    with pytest.raises(ImageMapError, match="no image for step.s. upload_model"):
        compiler.compile_pipeline(loaded, loaded.output)
    loaded.image_map.write_text(text.replace("@sha256:" + "2" * 64, "", 1))
    with pytest.raises(ImageMapError, match="not pinned by digest"):
        compiler.compile_pipeline(loaded, loaded.output)
    assert loaded.output.read_text() == "previous output\n"
    assert sorted(p.name for p in loaded.output.parent.iterdir() if p.name.startswith(".pipeline")) == []


def test_stale_map_is_refused_naming_image_and_input_unless_allowed(project):
    loaded, _ = write_lock(project)
    assert staleness.stale_images(loaded, image_map.load(loaded.image_map)) == {}
    (project.parent / "images" / "training" / "requirements.txt").write_text("numpy==3\n")
    with pytest.raises(StaleMapError, match=r"image training \(step training\): file requirements.txt changed"):
        compiler.compile_pipeline(loaded, loaded.output)
    assert not loaded.output.exists()
    notes = compiler.compile_pipeline(loaded, loaded.output, allow_stale=True)
    assert notes and "stale" in notes[0] and loaded.output.exists()


def test_other_base_image_makes_the_map_stale(project):
    write_lock(project)
    other = config.load(project, base_image="python:3.11-slim")
    stale = staleness.stale_images(other, image_map.load(other.image_map))
    assert "base image is now python:3.11-slim" in stale["base"][0]


def test_verify_reports_tampered_images(project):
    loaded, lock = write_lock(project)
    compiler.compile_pipeline(loaded, loaded.output)
    text = loaded.output.read_text().replace(lock.steps["training"], "127.0.0.1:5000/t/training:latest")
    problems = verify.pin_problems(yaml.safe_load(text), lock.steps)
    assert any("template training: container.image" in p and "not pinned" in p for p in problems)
    assert any("component_spec annotation" in p for p in problems)


def run_cli(project, *args):
    return cli.main(["--config", str(project), *args])


def test_cli_errors_are_one_line_with_exit_codes(project, capsys):
    assert run_cli(project, "compile") == ImageMapError.exit_code
    err = capsys.readouterr().err
    assert err.startswith("buildtool: error: ") and err.count("\n") == 1 and "Traceback" not in err
    write_lock(project)
    assert run_cli(project, "check") == 0
    (project.parent / "images" / "upload" / "Dockerfile").write_text("FROM scratch\n")
    assert run_cli(project, "check") == StaleMapError.exit_code
    assert "image upload (step upload_model): file Dockerfile changed" in capsys.readouterr().err
    assert run_cli(project, "compile", "--allow-stale", "--output", str(project.parent / "out.yaml")) == 0
    assert "warning:" in capsys.readouterr().err
    assert run_cli(project, "verify", "--offline", str(project.parent / "out.yaml")) == 0
    assert run_cli(project, "verify", "--offline", str(project.parent / "missing.yaml")) == 10


def test_compile_error_for_a_bad_pipeline_setting(project):
    loaded, _ = write_lock(project)
    text = project.read_text().replace("pipeline.training_pipeline:make_pipeline", "pipeline.nowhere:make_pipeline")
    project.write_text(text)
    with pytest.raises(CompileError, match="cannot import 'pipeline.nowhere'"):
        compiler.compile_pipeline(config.load(project), loaded.output)


def test_an_unreachable_registry_is_one_error_line_without_urllib3s_retry_warnings(project, tmp_path):
    """`verify` against a registry port where nothing listens: the retries happen (urllib3 would warn of each),
    and stderr holds only the error, naming the failure and the tries."""
    import os
    import subprocess
    import sys

    loaded, _ = write_lock(project)
    compiler.compile_pipeline(loaded, loaded.output)
    with refused_port() as port:
        for path in (loaded.image_map, loaded.output):
            path.write_text(path.read_text().replace("127.0.0.1:5000/", f"127.0.0.1:{port}/"))
        env = {
            **os.environ,
            "DOCKER_CONFIG": str(tmp_path / "no-docker-config"),
            "BUILDTOOL_REGISTRY": f"127.0.0.1:{port}",
        }  # the lock is bound to the configured registry
        done = subprocess.run(
            [sys.executable, "-c", CLI_WITH_QUICK_RETRIES, "--config", str(project), "verify"],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
    assert done.returncode == RegistryError.exit_code
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("buildtool: error: ")
    assert f"registry 127.0.0.1:{port} refused the connection" in done.stderr and "(tried 4 time(s))" in done.stderr


# -- the output path: each refusal names --output, what it is, and where to write instead ------------------------


def output_in_a_loop(root):
    (root / "loop").symlink_to(root / "loop")
    return root / "loop" / "pipeline.yaml"


@pytest.mark.parametrize(
    "output, says, fix",
    [
        pytest.param(
            lambda r: r / "images",
            "is a folder",
            "; name the file to write, e.g. {root}/images/pipeline.yaml",
            id="folder",
        ),
        pytest.param(
            lambda r: r / "image_map.yaml",
            "is the image map ({root}/image_map.yaml), which the workflow would overwrite",
            "; write the workflow elsewhere, e.g. pipeline.yaml",
            id="the-map",
        ),
        pytest.param(
            lambda r: r / "images" / ".." / "image_map.yaml",
            "is the image map",
            "; write the workflow elsewhere, e.g. pipeline.yaml",
            id="the-map-by-another-path",
        ),
        pytest.param(
            lambda r: r / "pyproject.toml",
            "is the configuration ({root}/pyproject.toml)",
            "; write the workflow elsewhere, e.g. pipeline.yaml",
            id="the-config",
        ),
        pytest.param(
            lambda r: r / "image_map.yaml" / "deeper" / "pipeline.yaml",
            "{root}/image_map.yaml is a file, not a folder",
            "; choose another path",
            id="under-a-file",
        ),
        pytest.param(output_in_a_loop, "cannot be used: ", "", id="symlink-loop"),
        pytest.param(
            lambda r: r / ("x" * 300) / "pipeline.yaml",
            "cannot be used: [Errno 36] File name too long",
            "",
            id="name-too-long",
        ),
    ],
)
def test_an_unusable_output_is_refused_naming_it_and_the_fix(project, output, says, fix):
    loaded, _ = write_lock(project)
    root = loaded.root
    path = output(root)
    with pytest.raises(ConfigError) as caught:
        compiler.check_output(loaded, path)
    message = str(caught.value)
    assert message.startswith(f"--output {path}: {says.format(root=root)}"), message
    assert message.endswith(fix.format(root=root)), message
    with pytest.raises(ConfigError):
        compiler.compile_pipeline(loaded, path)


@pytest.mark.parametrize("where", ["pipeline.yaml", "new/deeper/pipeline.yaml", "images/training/out.yaml"])
def test_a_usable_output_passes_and_compile_writes_it(project, where):
    loaded, _ = write_lock(project)
    path = loaded.root / where
    compiler.check_output(loaded, path)
    if path.parent.is_dir():
        assert compiler.compile_pipeline(loaded, path) == [] and yaml.safe_load(path.read_text())["kind"] == "Workflow"


def test_what_is_written_is_checked_again_and_a_bad_write_keeps_the_old_output(project, monkeypatch):
    """The rendered text is read back through the strict reader and checked: were the writer to change an image,
    compile refuses, naming the map and the template, and the old pipeline.yaml stays."""
    from buildtool.gate import kfp_compile

    loaded, lock = write_lock(project)
    compiler.compile_pipeline(loaded, loaded.output)
    before = loaded.output.read_bytes()
    other = lock.steps["upload_model"]

    def tampered(workflow):
        text = kfp_compile.render(workflow)
        return text.replace(f"image: {lock.steps['training']}", f"image: {other}", 1)

    monkeypatch.setattr(compiler, "render", tampered)
    with pytest.raises(CompileError) as caught:
        compiler.compile_pipeline(loaded, loaded.output)
    message = str(caught.value)
    assert message.startswith(f"compiled pipeline is not pinned as {loaded.image_map} says: template training: ")
    assert f"{other} differs from the map's {lock.steps['training']}" in message
    assert loaded.output.read_bytes() == before
    assert sorted(p.name for p in loaded.root.iterdir() if p.name.startswith(".pipeline")) == []


def test_verify_checks_the_bytes_it_is_given_not_the_file_they_came_from(project):
    """submit uploads exactly the bytes it checked: given those, verify does not read the path again."""
    loaded, lock = write_lock(project)
    compiler.compile_pipeline(loaded, loaded.output)
    data = loaded.output.read_bytes()
    loaded.output.write_text(loaded.output.read_text().replace(lock.steps["training"], "r.example/x:latest"))
    workflow = verify.verify_pipeline(loaded, loaded.output, None, data=data)
    assert workflow == yaml.safe_load(data)
    with pytest.raises(VerifyError, match="r.example/x:latest is not pinned by digest"):
        verify.verify_pipeline(loaded, loaded.output, None)


def test_every_problem_of_what_was_written_is_named(project, monkeypatch):
    from buildtool.gate import kfp_compile

    loaded, lock = write_lock(project)

    def tampered(workflow):
        text = kfp_compile.render(workflow)
        return text.replace(f"image: {lock.steps['training']}", "image: r.example/x:latest").replace(
            f"image: {lock.steps['upload_model']}", "image: r.example/y:latest"
        )

    monkeypatch.setattr(compiler, "render", tampered)
    with pytest.raises(CompileError) as caught:
        compiler.compile_pipeline(loaded, loaded.output)
    _, _, listed = str(caught.value).partition(" says: ")
    problems = listed.split("; ")
    assert len(problems) == 2, problems
    assert problems[0].startswith("template training: container.image: r.example/x:latest is not pinned")
    assert problems[1].startswith("template upload-model: container.image: r.example/y:latest is not pinned")
