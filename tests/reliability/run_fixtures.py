"""Workflows for the `buildtool run` tests: the real pipeline compiled by kfp, plain or with its platform
credentials taken from a Kubernetes Secret (kfp's own `use_k8s_secret`), against a map of invented digests."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import yaml

from buildtool.gate import compiler, kfp_compile

from ..helpers import write_lock

SECRET_NAME = "platform-credentials"
SECRET_KEYS = {"access_key": "PLATFORM_ACCESS_KEY", "secret_key": "PLATFORM_SECRET_KEY"}
#: The steps that talk to the platform.
PLATFORM_TASKS = ("download-training-dataset", "upload-model")
#: The credentials a run is given (never to be shown), as parameters or host variables.
SECRET = "sk-reliability-4b1f-never-shown"
ACCESS = "rel-tester-7c2"
ENVIRONMENT = {"PLATFORM_ACCESS_KEY": ACCESS, "PLATFORM_SECRET_KEY": SECRET}
ARGUMENTS = {
    "training_task_uid": "task-1",
    "training_dataset_uid": "ds-1",
    "model_uid": "model-1",
    "learning_rate": "0.01",
    "host": "127.0.0.1",
    "port": "8080",
    "access_key": ACCESS,
    "secret_key": SECRET,
}


def compile_project(project: Path, *, k8s_secret: bool = False) -> tuple[dict[str, Any], dict[str, str], Path]:
    """(workflow, step -> image, pipeline.yaml) of the project's pipeline, compiled by kfp next to its map."""
    import kfp.compiler
    from kfp import dsl
    from kfp.onprem import use_k8s_secret

    loaded, lock = write_lock(project)
    if not k8s_secret:
        compiler.compile_pipeline(loaded, loaded.output)
    else:
        conf = dsl.PipelineConf()
        secret = use_k8s_secret(secret_name=SECRET_NAME, k8s_secret_key_to_env=SECRET_KEYS)

        def platform_steps(op: Any) -> Any:
            return secret(op) if op.name in PLATFORM_TASKS else op

        conf.add_op_transformer(platform_steps)
        pipeline = kfp_compile.load_factory(loaded)(dict(lock.steps))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # kfp's own deprecation notes
            kfp.compiler.Compiler().compile(pipeline, str(loaded.output), pipeline_conf=conf)
    return yaml.safe_load(loaded.output.read_text()), dict(lock.steps), loaded.output


class RecordingEngine:
    """Answers `run` with scripted results and records what it was asked; a step that succeeds writes each
    output file (`data`) in the folders mounted for its outputs, as a kfp component does."""

    def __init__(self, results: list[Any]) -> None:
        self.results = list(results)
        self.calls: list[tuple[str, Any, dict[str, Any]]] = []

    def image_id(self, ref: str) -> str:
        return "sha256:" + "0" * 64

    def call(self, image: str, command: Any, **options: Any) -> Any:
        self.calls.append((image, command, options))
        result = self.results.pop(0)
        if result.exit_code == 0:
            for bind in options.get("binds", ()):
                if not bind.read_only:
                    (Path(bind.source) / "data").write_text("written")
        return result
