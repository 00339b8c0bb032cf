"""The pipeline as compiled by kfp 1.8.22: caching off in both forms, the two credential forms, the script entry.

The compile goes through `buildtool.gate.compiler` with the real kfp compiler, against
a lock written for the working tree (no engine); the step functions run in-process
against a real local platform server.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from buildtool import cli, config
from buildtool.errors import ConfigError
from buildtool.gate import compiler, verify
from buildtool.lock import image_map
from pipeline import steps
from pipeline.training_pipeline import SECRET_KEY_TO_ENV

from ..conftest import REPO
from ..helpers import write_lock
from ..platform_fixtures import ACCESS_KEY, DATASET_UID, SECRET_KEY

SECRET = "platform-credentials"
PLATFORM_STEPS = {"download-training-dataset", "upload-model"}


def compiled(project: Path, extra: str = "") -> tuple[dict[str, Any], str]:
    if extra:
        project.write_text(project.read_text().replace("[tool.buildtool]\n", f"[tool.buildtool]\n{extra}\n", 1))
    loaded, _ = write_lock(project)
    compiler.compile_pipeline(loaded, loaded.output)
    text = loaded.output.read_text()
    return yaml.safe_load(text), text


def containers(workflow: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {t["name"]: t for t in workflow["spec"]["templates"] if "container" in t}


def parameters(workflow: dict[str, Any]) -> dict[str, Any]:
    return {p["name"]: p.get("value") for p in workflow["spec"]["arguments"]["parameters"]}


def test_caching_is_off_in_both_forms_on_every_task(project):
    workflow, _ = compiled(project)
    templates = containers(workflow)
    assert set(templates) == {"download-training-dataset", "training", "upload-model"}
    for name, template in templates.items():
        metadata = template["metadata"]
        assert metadata["labels"]["pipelines.kubeflow.org/enable_caching"] == "false", name
        assert metadata["annotations"]["pipelines.kubeflow.org/max_cache_staleness"] == "P0D", name


def test_parameter_credentials_are_the_default_and_have_no_default_value(project):
    workflow, text = compiled(project)
    assert config.load(project).credentials == "parameters"
    assert parameters(workflow)["access_key"] is None and parameters(workflow)["secret_key"] is None
    for name, template in containers(workflow).items():
        assert "env" not in template["container"], name
        if name in PLATFORM_STEPS:
            args = template["container"]["args"]
            assert args[args.index("--secret-key") + 1] == "{{inputs.parameters.secret_key}}"
    assert "secretKeyRef" not in text


def test_k8s_secret_credentials_leave_argv_and_the_workflow(project):
    workflow, text = compiled(project, f'credentials = "k8s-secret:{SECRET}"')
    assert verify.pin_problems(workflow, image_map.load(config.load(project).image_map).steps) == []
    assert "access_key" not in parameters(workflow) and "secret_key" not in parameters(workflow)
    assert "inputs.parameters.secret_key" not in text and "inputs.parameters.access_key" not in text
    for name, template in containers(workflow).items():
        container = template["container"]
        if name not in PLATFORM_STEPS:
            assert "env" not in container, name
            continue
        assert container["env"] == [
            {"name": env, "valueFrom": {"secretKeyRef": {"name": SECRET, "key": key}}}
            for key, env in SECRET_KEY_TO_ENV.items()
        ], name
        assert SECRET_KEY_TO_ENV == {"access_key": "PLATFORM_ACCESS_KEY", "secret_key": "PLATFORM_SECRET_KEY"}
        args = container["args"]
        assert args[args.index("--access-key") + 1] == "" and args[args.index("--secret-key") + 1] == ""


@pytest.mark.parametrize(
    "value",
    ["k8s-secret:", "k8s-secret:Platform_Creds", "k8s-secret:creds\n", "vault:creds", "secret", "k8s-secret:-x"],
)
def test_other_credentials_values_are_refused_naming_the_key(project, value, capsys):
    setting = f"[tool.buildtool]\ncredentials = {json.dumps(value)}\n"
    project.write_text(project.read_text().replace("[tool.buildtool]\n", setting, 1))
    with pytest.raises(ConfigError, match=r"\[tool.buildtool\] credentials: .* is neither \"parameters\" nor"):
        config.load(project)
    assert cli.main(["--config", str(project), "compile"]) == ConfigError.exit_code
    err = capsys.readouterr().err
    assert err.startswith("buildtool: error: ") and err.count("\n") == 1


# -- the step functions read the Secret's environment variables when their parameters are empty ----------------


def test_download_and_upload_steps_take_credentials_from_the_environment(platform_server, tmp_path, monkeypatch):
    monkeypatch.setenv("PLATFORM_ACCESS_KEY", ACCESS_KEY)
    monkeypatch.setenv("PLATFORM_SECRET_KEY", SECRET_KEY)
    address = {"host": "127.0.0.1", "port": str(platform_server.port), "access_key": "", "secret_key": ""}
    steps.download_training_dataset(str(tmp_path / "dataset"), DATASET_UID, platform_timeout=10, **address)
    assert zipfile.ZipFile(tmp_path / "dataset" / "training_dataset.zip").testzip() is None

    (tmp_path / "model").mkdir()
    with zipfile.ZipFile(tmp_path / "model" / "model.zip", "w") as archive:
        archive.writestr("model.h5", b"h5")
    steps.upload_model(str(tmp_path / "model"), "model-env", platform_timeout=10, **address)
    uploaded = platform_server.data_dir / "model" / "model-env"
    assert uploaded.read_bytes() == (tmp_path / "model" / "model.zip").read_bytes()


def test_steps_without_credentials_anywhere_fail_saying_where_to_put_them(platform_server, tmp_path, monkeypatch):
    monkeypatch.delenv("PLATFORM_ACCESS_KEY", raising=False)
    monkeypatch.delenv("PLATFORM_SECRET_KEY", raising=False)
    with pytest.raises(ValueError, match="pass access_key and secret_key, or set PLATFORM_ACCESS_KEY and PLATFOR"):
        steps.download_training_dataset(
            str(tmp_path / "d"), DATASET_UID, "127.0.0.1", str(platform_server.port), access_key="", secret_key=""
        )


# -- `python pipeline/training_pipeline.py`: the seed's entry point, as `buildtool compile` --------------------


def run_script(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BUILDTOOL_")}
    return subprocess.run(
        [sys.executable, *args], cwd=project.parent, env=env, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize("form", [["pipeline/training_pipeline.py"], ["-m", "pipeline.training_pipeline"]])
def test_the_seed_entry_point_compiles_a_pinned_pipeline(project, form):
    _, lock = write_lock(project)
    output = project.parent / "pipeline.yaml"

    result = run_script(project, *form)

    assert result.returncode == 0, result.stderr
    workflow = yaml.safe_load(output.read_text())
    images = {t["name"]: t["container"]["image"] for t in containers(workflow).values()}
    assert images == {step.replace("_", "-"): ref for step, ref in lock.steps.items()}
    assert all("@sha256:" in image for image in images.values())


@pytest.mark.parametrize(
    ("breakage", "code", "fragment"),
    [
        ("missing", 3, "image_map.yaml: not found"),
        ("stale", 4, "image training (step training): file requirements.txt changed"),
    ],
)
def test_the_seed_entry_point_refuses_a_missing_or_stale_map_in_one_line(project, breakage, code, fragment):
    loaded, _ = write_lock(project)
    if breakage == "missing":
        loaded.image_map.unlink()
    else:
        (project.parent / "images" / "training" / "requirements.txt").write_text("numpy==3\n")

    result = run_script(project, "pipeline/training_pipeline.py")

    assert result.returncode == code, result.stderr
    assert result.stderr.startswith("buildtool: error: ") and result.stderr.count("\n") == 1, result.stderr
    assert fragment in result.stderr and "Traceback" not in result.stderr
    assert not (project.parent / "pipeline.yaml").exists()


def test_the_seed_import_block_and_main_block_are_kept():
    source = (REPO / "pipeline" / "training_pipeline.py").read_text()
    for line in (
        "import kfp\n",
        "import kfp.components as components",
        "from kfp import dsl\n",
        "from kfp.components import func_to_container_op\n",
        "\nif __name__ == '__main__':",  # the formatter is told to leave it (fmt: skip)
    ):
        assert line in source
