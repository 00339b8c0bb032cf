"""The training pipeline, built against a step -> image map (never a hand-typed image).

`make_pipeline(img_name_map)` is what `buildtool compile` calls with the
digest-pinned images of `image_map.yaml`; nothing is read or compiled at import.
Run as a script (`python pipeline/training_pipeline.py` or
`python -m pipeline.training_pipeline`), it compiles `pipeline.yaml` as
`buildtool compile` does, with the same freshness and pin checks.
"""

import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

# The seed's import block (and kfp.onprem, for use_k8s_secret).
import kfp
import kfp.components as components  # noqa: F401  (as the seed has it; the steps use kfp.components)
import kfp.onprem
from kfp import dsl
from kfp.components import func_to_container_op

#: `credentials` values: the seed's access_key/secret_key pipeline parameters, or a Kubernetes Secret.
PARAMETERS = "parameters"
K8S_SECRET = "k8s-secret:"
#: Kubernetes Secret key -> environment variable of the download and upload steps (see pipeline/steps.py).
SECRET_KEY_TO_ENV = {"access_key": "PLATFORM_ACCESS_KEY", "secret_key": "PLATFORM_SECRET_KEY"}

PipelineFunction = TypeVar("PipelineFunction", bound=Callable[..., Any])


def secret_name(credentials: str) -> str | None:
    """The Kubernetes Secret named by `credentials`, or None for the parameter form."""
    if credentials == PARAMETERS:
        return None
    if credentials.startswith(K8S_SECRET) and credentials[len(K8S_SECRET) :]:
        return credentials[len(K8S_SECRET) :]
    raise ValueError(f"credentials {credentials!r} is neither {PARAMETERS!r} nor '{K8S_SECRET}NAME'")


def _as_pipeline(func: PipelineFunction) -> PipelineFunction:
    """kfp's pipeline decorator with this pipeline's name and description (kfp is untyped; the
    decorator returns the function it marks)."""
    marked: PipelineFunction = dsl.pipeline(
        name="pipeline", description="Download a training dataset, train an LSTM, upload the model."
    )(func)
    return marked


def _settings(task: dsl.ContainerOp, step: str, training_task_uid: str, pull_policy: str) -> None:
    """The per-task settings every step of this pipeline runs with."""
    task.set_cpu_request("0.5").set_cpu_limit("0.5")
    task.set_memory_request("4000Mi").set_memory_limit("4000Mi")
    # Caching off in both forms: the label kfp 1.8 writes for this call, and the annotation
    # the KFP v1 cache webhook reads (a result older than zero seconds is never reused).
    task.set_caching_options(False)
    task.execution_options.caching_strategy.max_cache_staleness = "P0D"
    task.set_image_pull_policy(pull_policy)
    task.add_pod_label(training_task_uid, step)


def make_pipeline(
    img_name_map: Mapping[str, str], image_pull_policy: str = "IfNotPresent", credentials: str = PARAMETERS
) -> Callable[..., Any]:
    """The pipeline function, its three steps running the images `img_name_map` names.

    `credentials` is ``"parameters"`` (the seed's form: access_key and secret_key are pipeline
    parameters, passed on the steps' command lines) or ``"k8s-secret:NAME"``: the pipeline takes
    no credentials, and the download and upload steps read them from the Kubernetes Secret NAME
    (keys access_key, secret_key) as PLATFORM_ACCESS_KEY and PLATFORM_SECRET_KEY.
    """
    from .steps import download_training_dataset, training, upload_model  # here, so the script form imports

    secret = secret_name(credentials)
    download_training_dataset_op = func_to_container_op(
        download_training_dataset, base_image=img_name_map["download_training_dataset"]
    )
    training_op = func_to_container_op(training, base_image=img_name_map["training"])
    upload_model_op = func_to_container_op(upload_model, base_image=img_name_map["upload_model"])

    def tasks(
        training_task_uid: str,
        training_dataset_uid: str,
        model_uid: str,
        learning_rate: float,
        host: str,
        port: str,
        access_key: str,
        secret_key: str,
        batch_size: int,
        epochs: int,
        record_accuracy: bool,
        max_samples: int,
        allow_pickle_dataset: bool,
        platform_timeout: float,
    ) -> None:
        task1 = download_training_dataset_op(
            training_dataset_uid=training_dataset_uid,
            host=host,
            port=port,
            access_key=access_key,
            secret_key=secret_key,
            platform_timeout=platform_timeout,
        )
        _settings(task1, "download_training_dataset", training_task_uid, image_pull_policy)
        task2 = training_op(
            input=task1.output,
            learning_rate=learning_rate,
            batch_size=batch_size,
            epochs=epochs,
            record_accuracy=record_accuracy,
            max_samples=max_samples,
            allow_pickle_dataset=allow_pickle_dataset,
        )
        _settings(task2, "training", training_task_uid, image_pull_policy)
        task3 = upload_model_op(
            input=task2.output,
            model_uid=model_uid,
            host=host,
            port=port,
            access_key=access_key,
            secret_key=secret_key,
            platform_timeout=platform_timeout,
        )
        _settings(task3, "upload_model", training_task_uid, image_pull_policy)
        if secret is not None:
            for task in (task1, task3):
                task.apply(kfp.onprem.use_k8s_secret(secret_name=secret, k8s_secret_key_to_env=SECRET_KEY_TO_ENV))

    if secret is None:

        @_as_pipeline
        def pipeline(
            training_task_uid: str,
            training_dataset_uid: str,
            model_uid: str,
            learning_rate: float,
            host: str,
            port: str,
            access_key: str,
            secret_key: str,
            batch_size: int = 4,
            epochs: int = 1,
            record_accuracy: bool = True,
            max_samples: int = 0,
            allow_pickle_dataset: bool = False,
            platform_timeout: float = 300.0,
        ) -> None:
            tasks(
                training_task_uid,
                training_dataset_uid,
                model_uid,
                learning_rate,
                host,
                port,
                access_key,
                secret_key,
                batch_size,
                epochs,
                record_accuracy,
                max_samples,
                allow_pickle_dataset,
                platform_timeout,
            )

        return pipeline

    @_as_pipeline
    def pipeline_with_k8s_secret(
        training_task_uid: str,
        training_dataset_uid: str,
        model_uid: str,
        learning_rate: float,
        host: str,
        port: str,
        batch_size: int = 4,
        epochs: int = 1,
        record_accuracy: bool = True,
        max_samples: int = 0,
        allow_pickle_dataset: bool = False,
        platform_timeout: float = 300.0,
    ) -> None:
        # Empty credentials on the command line: the steps read the Secret from their environment.
        tasks(
            training_task_uid,
            training_dataset_uid,
            model_uid,
            learning_rate,
            host,
            port,
            "",
            "",
            batch_size,
            epochs,
            record_accuracy,
            max_samples,
            allow_pickle_dataset,
            platform_timeout,
        )

    return pipeline_with_k8s_secret


def main(project: Path) -> int:
    """Compile `project`'s pipeline.yaml from its image_map.yaml, as `buildtool compile` does."""
    try:
        from buildtool.cli import main as buildtool_main
    except ImportError:
        print(
            "error: buildtool is not installed; run `pip install -e .` in the project, then this again", file=sys.stderr
        )
        return 2
    return buildtool_main(["--config", str(project / "pyproject.toml"), "compile"])


# The seed's line, kept as it writes it.
if __name__ == '__main__':  # fmt: skip
    sys.exit(main(Path(__file__).resolve().parents[1]))
