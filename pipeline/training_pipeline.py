"""The training pipeline, built against a step -> image map (never a hand-typed image).

`make_pipeline(img_name_map)` is what `buildtool compile` calls with the
digest-pinned images of `image_map.yaml`; nothing is read or compiled at import.
"""

from typing import Callable, Mapping

from kfp import dsl
from kfp.components import func_to_container_op

from .steps import download_training_dataset, training, upload_model

STEPS = ("download_training_dataset", "training", "upload_model")


def _settings(task: dsl.ContainerOp, step: str, training_task_uid: str, pull_policy: str) -> None:
    """The per-task settings every step of this pipeline runs with."""
    task.set_cpu_request("0.5").set_cpu_limit("0.5")
    task.set_memory_request("4000Mi").set_memory_limit("4000Mi")
    task.set_caching_options(False)
    task.set_image_pull_policy(pull_policy)
    task.add_pod_label(training_task_uid, step)


def make_pipeline(img_name_map: Mapping[str, str], image_pull_policy: str = "IfNotPresent") -> Callable:
    """The pipeline function, its three steps running the images `img_name_map` names."""
    download_training_dataset_op = func_to_container_op(
        download_training_dataset, base_image=img_name_map["download_training_dataset"])
    training_op = func_to_container_op(training, base_image=img_name_map["training"])
    upload_model_op = func_to_container_op(upload_model, base_image=img_name_map["upload_model"])

    @dsl.pipeline(name="pipeline", description="Download a training dataset, train an LSTM, upload the model.")
    def pipeline(training_task_uid: str, training_dataset_uid: str, model_uid: str, learning_rate: float,
                 host: str, port: str, access_key: str, secret_key: str, batch_size: int = 4, epochs: int = 1,
                 record_accuracy: bool = True, max_samples: int = 0,
                 allow_pickle_dataset: bool = False, platform_timeout: float = 300.0):
        task1 = download_training_dataset_op(training_dataset_uid=training_dataset_uid, host=host, port=port,
                                             access_key=access_key, secret_key=secret_key,
                                             platform_timeout=platform_timeout)
        _settings(task1, "download_training_dataset", training_task_uid, image_pull_policy)
        task2 = training_op(input=task1.output, learning_rate=learning_rate, batch_size=batch_size, epochs=epochs,
                            record_accuracy=record_accuracy, max_samples=max_samples,
                            allow_pickle_dataset=allow_pickle_dataset)
        _settings(task2, "training", training_task_uid, image_pull_policy)
        task3 = upload_model_op(input=task2.output, model_uid=model_uid, host=host, port=port,
                                access_key=access_key, secret_key=secret_key, platform_timeout=platform_timeout)
        _settings(task3, "upload_model", training_task_uid, image_pull_policy)

    return pipeline
