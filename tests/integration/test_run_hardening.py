"""`buildtool run` on the real engine and registry.

A variable the workflow takes from a Kubernetes Secret (kfp's `use_k8s_secret`) reaches the container's
environment from the host's, and is not on its command line; and images are checked against the map that
`build --push` wrote for them.

The secret step holds its container open until the test has inspected it (it waits for a file the test writes
into its output folder), so `docker inspect` sees the running container that `run` labelled.
"""

# No `from __future__ import annotations`: kfp reads the step function's annotations as objects.
import secrets
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import docker
import yaml
from kfp.components import OutputPath

from buildtool import cli
from buildtool.dev.run_plan import RUN_LABEL

from .conftest import BASE_IMAGE, served_digest

VARIABLE = "PLATFORM_SECRET_KEY"


def reveal(greeting: str, output: OutputPath()) -> None:  # type: ignore[valid-type]
    """Write the variable's value and the greeting into the output folder, then wait for the test's go."""
    import os
    import time

    os.makedirs(output)
    with open(os.path.join(output, "seen"), "w") as handle:
        handle.write(os.environ.get("PLATFORM_SECRET_KEY", "<absent>") + "\n" + greeting)
    deadline = time.monotonic() + 180
    while not os.path.exists(os.path.join(output, "go")) and time.monotonic() < deadline:
        time.sleep(0.2)


def compile_reveal(image: str, path: Path) -> None:
    import kfp.compiler
    from kfp import components, dsl
    from kfp.onprem import use_k8s_secret

    op = components.func_to_container_op(reveal, base_image=image)

    @dsl.pipeline(name="reveal")
    def pipeline(greeting: str) -> None:
        op(greeting=greeting).apply(
            use_k8s_secret(secret_name="platform-credentials", k8s_secret_key_to_env={"secret_key": VARIABLE})
        )

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kfp.compiler.Compiler().compile(pipeline, str(path))


def test_a_secret_variable_reaches_the_environment_not_the_command_line(
    tmp_path: Path, registry: str, engine_client: docker.DockerClient
) -> None:
    digest = served_digest(BASE_IMAGE)
    assert digest, f"{BASE_IMAGE} is not in the registry; run scripts/infra-up.sh"
    image = f"{BASE_IMAGE}@{digest}"
    pipeline = tmp_path / "pipeline.yaml"
    compile_reveal(image, pipeline)
    image_map = tmp_path / "image_map.yaml"
    image_map.write_text(f"steps:\n  reveal: {image}\n")
    workdir = tmp_path / "work"
    secret = "it-" + secrets.token_urlsafe(24)
    label = f"{RUN_LABEL}={workdir.resolve()}"
    command = [
        sys.executable,
        "-m",
        "buildtool",
        "run",
        str(pipeline),
        "--image-map",
        str(image_map),
        "-p",
        "greeting=hello",
        "--workdir",
        str(workdir),
    ]
    run = subprocess.Popen(
        command,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", VARIABLE: secret},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 180
        running: list[Any] = []
        while not running and run.poll() is None and time.monotonic() < deadline:
            running = engine_client.containers.list(filters={"label": label})
            time.sleep(0.2)
        assert len(running) == 1, f"no running container labelled {label}: {run.communicate(timeout=30)}"
        attrs = engine_client.api.inspect_container(running[0].id)
        command_line = [
            attrs["Path"],
            *attrs["Args"],
            *(attrs["Config"]["Cmd"] or []),
            *(attrs["Config"]["Entrypoint"] or []),
        ]
        assert not any(secret in part for part in command_line)
        assert "--greeting" in attrs["Args"] and "hello" in attrs["Args"]  # the command line is the one inspected
        assert f"{VARIABLE}={secret}" in attrs["Config"]["Env"]
        assert attrs["HostConfig"]["NetworkMode"] == "none"
        (workdir / "reveal" / "reveal-output" / "data" / "go").touch()
        out, err = run.communicate(timeout=180)
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate()
        for container in engine_client.containers.list(all=True, filters={"label": label}):
            container.remove(force=True)  # only if the run could not remove it itself
    assert run.returncode == 0, err
    assert (workdir / "reveal" / "reveal-output" / "data" / "seen").read_text() == f"{secret}\nhello"
    assert secret not in out + err
    assert f"{VARIABLE}=*** (host ${VARIABLE}, for secret platform-credentials/secret_key)" in out + err
    assert engine_client.containers.list(all=True, filters={"label": label}) == []


def test_run_accepts_what_build_and_compile_pinned_and_refuses_a_swapped_image(
    small_project: Path, capsys: Any
) -> None:
    """The map check on real output: build --push, compile, then run --dry-run against the project's map."""
    config = ["--config", str(small_project)]
    assert cli.main([*config, "build", "--push"]) == 0
    assert cli.main([*config, "compile"]) == 0
    pipeline = small_project.parent / "pipeline.yaml"
    params = [
        item
        for pair in (
            "training_task_uid=t",
            "training_dataset_uid=d",
            "model_uid=m",
            "learning_rate=0.1",
            "host=127.0.0.1",
            "port=1",
            "access_key=a",
            "secret_key=s",
        )
        for item in ("-p", pair)
    ]
    capsys.readouterr()
    assert cli.main([*config, "run", str(pipeline), "--dry-run", *params]) == 0
    out = capsys.readouterr().out
    assert f"every image is pinned and matches {small_project.parent / 'image_map.yaml'}" in out
    # The training step's image swapped for the (real, pinned) download image: verify would refuse it, so run does.
    text = pipeline.read_text()
    workflow = yaml.safe_load(text)
    images = {t["name"]: t["container"]["image"] for t in workflow["spec"]["templates"] if "container" in t}
    pipeline.write_text(text.replace(f"image: {images['training']}", f"image: {images['download-training-dataset']}"))
    before = {p: p.read_bytes() for p in small_project.parent.glob("*.yaml")}
    assert cli.main([*config, "run", str(pipeline), "--workdir", str(small_project.parent / "work"), *params]) == 11
    err = capsys.readouterr().err
    assert (
        f"template training: container.image: {images['download-training-dataset']} differs from the map's "
        f"{images['training']}"
        in err
        and len(err.splitlines()) == 1
    )
    assert {p: p.read_bytes() for p in small_project.parent.glob("*.yaml")} == before
    assert not (small_project.parent / "work").exists()
