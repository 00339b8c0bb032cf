"""The three steps, run from the compiled pipeline inside their real images against a real platform server.

`buildtool build --push` builds (or reuses) the repository's images under a
repository prefix of these tests' own, in a copy of the project so the
repository's image_map.yaml stays as it is; the pipeline is compiled against them
to a temporary file and its steps run with `buildtool.dev.run_exec` (what
`buildtool run` executes), as the cluster would run them: with no network but
the platform server's endpoint, forwarded as `--allow-host` does.
The platform is seeded with `buildtool platform seed`, whose default is the
platform's own object-array layout. Faults the real server cannot produce come
from a real proxy in front of it (tests/platform_fixtures.py).

TensorFlow runs are few and short: one image build shared by every test, one
full training run (the model and its quality), one run with options, and
failures that stop before training.
"""

from __future__ import annotations

import copy
import io
import json
import os
import re
import shutil
import time
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import pytest
import yaml

from buildtool import cli
from buildtool.dev import run_exec, run_network, run_outcome, run_plan, run_preview, run_workflow
from buildtool.dev.dataset import write_training_dataset
from buildtool.dev.platform_server import PlatformServer, seed_dataset, stored_path
from buildtool.engine import Engine
from platform_client.dataset import pack_training_dataset

from ..conftest import REPO
from ..platform_fixtures import ACCESS_KEY, DATASET_UID, SECRET_KEY, Fault
from .conftest import BASE_IMAGE

pytestmark = pytest.mark.slow

DOWNLOAD, TRAINING, UPLOAD = "download-training-dataset", "training", "upload-model"
#: Enough to learn the generated dataset clearly (validation MSE ~3% of the mean's) in ~15 s on 2 cores.
TRAINING_ARGUMENTS = {"epochs": "8", "batch_size": "16", "learning_rate": "0.005"}
TRAINED_DATASET_UID = "ds-200"
MODEL_UID = "model-it"
#: The images of these tests live under a repository prefix of their own.
REPOSITORY = "it-steps-in-images"

# Runs in the training image with the run's artifacts mounted at /run: loads the model as Keras does,
# reports its layers, loss, optimizer and metrics (from the loaded model and from the file's own
# training config), and compares its validation MSE, on the step's 80/10/10 split, with that of
# predicting the training mean.
MODEL_CHECK = r"""
import json, tempfile
import h5py
import numpy as np
import keras
from sklearn.model_selection import train_test_split
from platform_client.archive import safe_extract
from platform_client.dataset import load_training_dataset

work = tempfile.mkdtemp()
safe_extract("/run/dataset/training_dataset.zip", work + "/dataset")
safe_extract("/run/model/model.zip", work + "/model")
x, y = load_training_dataset(work + "/dataset/training_dataset.npy")
x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, random_state=42)
x_test, x_validate, y_test, y_validate = train_test_split(x_test, y_test, test_size=0.5, random_state=42)
model = keras.models.load_model(work + "/model/model.h5")
with h5py.File(work + "/model/model.h5", "r") as saved:
    training_config = json.loads(saved.attrs["training_config"])
predicted = model.predict(x_validate, verbose=0)
evaluated = model.evaluate(x_validate, y_validate, batch_size=len(x_validate), return_dict=True, verbose=0)
keys = ("units", "rate", "activation")
print("RESULT " + json.dumps({
    "class": type(model).__name__,
    "layers": [[type(layer).__name__, {k: v for k, v in layer.get_config().items() if k in keys}]
               for layer in model.layers],
    "input_shape": list(model.input_shape), "output_shape": list(model.output_shape),
    "loss": getattr(model.loss, "__name__", model.loss), "saved_loss": training_config["loss"],
    "optimizer": type(model.optimizer).__name__, "learning_rate": float(model.optimizer.learning_rate),
    "saved_metrics": training_config["metrics"], "evaluated": sorted(evaluated),
    "evaluated_loss": float(evaluated["loss"]),
    "validate": len(x_validate),
    "val_mse": float(np.mean((predicted - y_validate) ** 2)),
    "mean_mse": float(np.mean((y_train.mean(axis=0) - y_validate) ** 2)),
}))
"""


@dataclass(frozen=True)
class Pipeline:
    path: Path
    workflow: Mapping[str, Any]


@dataclass(frozen=True)
class Trained:
    dataset_zip: Path
    data_dir: Path
    training_image: str
    results: Mapping[str, run_outcome.NodeResult]
    events: list[tuple[str, str]]


@pytest.fixture(scope="session")
def pipeline(registry: str, tmp_path_factory: pytest.TempPathFactory) -> Pipeline:
    """The repository's real images built and pushed (what changed only), and the pipeline compiled against them."""
    # A copy of the project, so the repository's own image_map.yaml is left alone.
    project = tmp_path_factory.mktemp("project")
    for name in ("images", "pipeline"):
        shutil.copytree(REPO / name, project / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.copy(REPO / "pyproject.toml", project / "pyproject.toml")
    output = project / "pipeline.yaml"
    config = str(project / "pyproject.toml")
    with mock.patch.dict(os.environ, {"BUILDTOOL_BASE_IMAGE": BASE_IMAGE, "BUILDTOOL_REPOSITORY": REPOSITORY}):
        assert cli.main(["--config", config, "build", "--push"]) == 0
        assert cli.main(["--config", config, "compile", "--output", str(output)]) == 0
    return Pipeline(output, yaml.safe_load(output.read_text()))


@pytest.fixture(scope="session")
def engine() -> Iterator[Engine]:
    engine = Engine()
    yield engine
    engine.close()


def plan_for(workflow: Mapping[str, Any], port: int, **overrides: str) -> run_plan.RunPlan:
    arguments = {
        "training_task_uid": "task-it",
        "training_dataset_uid": DATASET_UID,
        "model_uid": MODEL_UID,
        "learning_rate": "0.001",
        "host": "127.0.0.1",
        "port": str(port),
        "access_key": ACCESS_KEY,
        "secret_key": SECRET_KEY,
        **overrides,
    }
    return run_workflow.plan_run(workflow, arguments)


def plan(pipeline: Pipeline, port: int, **overrides: str) -> list[run_plan.StepRun]:
    return run_preview.preview(plan_for(pipeline.workflow, port, **overrides))


def execute(
    workflow: Mapping[str, Any],
    engine: Engine,
    workdir: Path,
    port: int,
    events: list[tuple[str, str]] | None = None,
    **overrides: str,
) -> run_outcome.RunOutcome:
    """The pipeline run as `buildtool run --allow-host 127.0.0.1:PORT` runs it."""
    plan = plan_for(workflow, port, **overrides)
    image = run_preview.preview(plan)[0].image
    seen = events if events is not None else []
    endpoint = run_network.Endpoint("127.0.0.1", port)
    with run_network.Isolation(engine, [endpoint], False, image, {run_plan.RUN_LABEL: str(workdir)}) as network:
        return run_exec.execute_run(
            plan, engine, workdir, lambda who, what: seen.append((who, what)), network_mode=network.network_mode
        )


def only(pipeline: Pipeline, task: str) -> dict[str, Any]:
    """The workflow with its DAG cut down to `task`."""
    workflow = copy.deepcopy(dict(pipeline.workflow))
    [dag] = [t for t in workflow["spec"]["templates"] if t["name"] == workflow["spec"]["entrypoint"]]
    dag["dag"]["tasks"] = [t for t in dag["dag"]["tasks"] if t["name"] == task]
    return workflow


def files_under(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()]


def run_failing(
    pipeline: Pipeline, engine: Engine, workdir: Path, port: int, failing: str, **overrides: str
) -> tuple[str, list[tuple[str, str]], float]:
    """Run the whole pipeline, which must stop at step `failing`; return the error, the events, the seconds."""
    events: list[tuple[str, str]] = []
    started = time.monotonic()
    outcome = execute(pipeline.workflow, engine, workdir, port, events, **overrides)
    message = outcome.failure or ""
    assert message.startswith(f"step {failing} failed with exit code 1 after "), message
    assert (failing, "done") not in {(who, what[:4]) for who, what in events}
    assert SECRET_KEY not in message and not any(SECRET_KEY in what for _, what in events)
    return message, events, time.monotonic() - started


def model_check(engine: Engine, image: str, dataset_dir: Path, model_dir: Path) -> dict[str, Any]:
    result = engine.call(
        image,
        ["python3", "-c", MODEL_CHECK],
        network_mode="none",
        volumes={
            str(dataset_dir): {"bind": "/run/dataset", "mode": "ro"},
            str(model_dir): {"bind": "/run/model", "mode": "ro"},
        },
    )
    lines = [line for line in result.output.splitlines() if line.startswith("RESULT ")]
    assert result.exit_code == 0 and lines, result.output[-3000:]
    return json.loads(lines[-1].removeprefix("RESULT "))


# -- the pipeline, start to end ----------------------------------------------------------------------------------


def seed_with_cli(data_dir: Path, uid: str, samples: int) -> Path:
    """`buildtool platform seed` with its default format: the platform's object-array layout."""
    assert cli.main(["platform", "seed", uid, "--data", str(data_dir), "--samples", str(samples)]) == 0
    return stored_path(data_dir, "training_dataset", uid)


@pytest.fixture(scope="module")
def trained(pipeline: Pipeline, engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """The three steps run once, with default options, against a platform holding 200 samples in its own layout."""
    root = tmp_path_factory.mktemp("trained")
    dataset = seed_with_cli(root / "platform", TRAINED_DATASET_UID, 200)
    events: list[tuple[str, str]] = []
    with PlatformServer(root / "platform", {ACCESS_KEY: SECRET_KEY}) as server:
        steps = plan(pipeline, server.port, training_dataset_uid=TRAINED_DATASET_UID, **TRAINING_ARGUMENTS)
        outcome = execute(
            pipeline.workflow,
            engine,
            root / "work",
            server.port,
            events,
            training_dataset_uid=TRAINED_DATASET_UID,
            **TRAINING_ARGUMENTS,
        )
    assert outcome.failure is None, outcome.failure
    return Trained(dataset, server.data_dir, steps[1].image, {r.node: r for r in outcome.nodes}, events)


@pytest.fixture(scope="module")
def checked(trained: Trained, engine: Engine) -> dict[str, Any]:
    return model_check(
        engine,
        trained.training_image,
        trained.results[DOWNLOAD].outputs[f"{DOWNLOAD}-output"],
        trained.results[TRAINING].outputs["training-output"],
    )


def test_download_step_fetches_the_dataset_from_the_platform(trained: Trained) -> None:
    downloaded = trained.results[DOWNLOAD].outputs[f"{DOWNLOAD}-output"] / "training_dataset.zip"
    assert downloaded.read_bytes() == trained.dataset_zip.read_bytes()
    assert f"downloaded training dataset {TRAINED_DATASET_UID}" in trained.results[DOWNLOAD].output


def test_training_step_trains_with_tensorflow_and_writes_model_zip(trained: Trained) -> None:
    result = trained.results[TRAINING]
    assert "samples: 160 train, 20 validate, 20 test" in result.output  # all 200, split 80/10/10
    assert "Epoch 8/8" in result.output
    folder = result.outputs["training-output"]
    assert sorted(p.name for p in folder.iterdir()) == ["model.zip", "model_accuracy.txt"]
    with zipfile.ZipFile(folder / "model.zip") as archive:
        assert archive.namelist() == ["model.h5"]
    assert 0.0 <= float((folder / "model_accuracy.txt").read_text()) <= 1.0


def test_the_platform_layout_trains_by_default(trained: Trained) -> None:
    with zipfile.ZipFile(trained.dataset_zip) as archive:
        header = archive.read("training_dataset.npy")[:128]
    assert b"'descr': '|O'" in header  # what `platform seed` stored is the platform's object array
    assert "allow_pickle_dataset=False" in "\n".join(what for who, what in trained.events if who == TRAINING)
    assert "samples: 160 train, 20 validate, 20 test" in trained.results[TRAINING].output


def test_model_is_the_seed_model_as_the_seed_builds_it(checked: dict[str, Any]) -> None:
    assert checked["class"] == "Sequential"
    assert checked["layers"] == [
        ["LSTM", {"units": 64, "activation": "tanh"}],
        ["Dropout", {"rate": 0.2}],
        ["Dense", {"units": 32, "activation": "relu"}],
        ["Dense", {"units": 3, "activation": "linear"}],
    ]
    assert checked["input_shape"] == [None, 100, 3] and checked["output_shape"] == [None, 3]


def test_model_is_compiled_as_the_seed_compiles_it(checked: dict[str, Any]) -> None:
    assert checked["loss"] == "mean_squared_error" and checked["saved_loss"] == "mean_squared_error"
    # The loss the reloaded model evaluates is the mean squared error computed here by hand.
    assert checked["evaluated_loss"] == pytest.approx(checked["val_mse"], rel=1e-4)
    assert checked["optimizer"] == "Adam"
    assert checked["learning_rate"] == pytest.approx(float(TRAINING_ARGUMENTS["learning_rate"]), rel=1e-6)
    assert "accuracy" in checked["saved_metrics"] and "accuracy" in checked["evaluated"]


def test_training_learns_far_better_than_predicting_the_mean(trained: Trained, checked: dict[str, Any]) -> None:
    # Keras prints the time per batch of each epoch as "123ms/step" or "1s/step".
    per_batch = [
        float(value) * (1 if unit == "ms" else 1000)
        for value, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|s)/step", trained.results[TRAINING].output)
    ]
    seconds = ", ".join(f"{task} {result.seconds:.1f} s" for task, result in trained.results.items())
    print(
        f"validation MSE {checked['val_mse']:.4f} vs {checked['mean_mse']:.4f} predicting the training mean "
        f"({checked['validate']} samples); steps: {seconds}; ms per batch by epoch {per_batch}"
    )
    assert len(per_batch) == int(TRAINING_ARGUMENTS["epochs"])
    assert checked["validate"] == 20
    assert checked["val_mse"] < 0.25 * checked["mean_mse"], checked


def test_upload_step_stores_model_and_accuracy_on_the_platform(trained: Trained) -> None:
    folder = trained.results[TRAINING].outputs["training-output"]
    assert (trained.data_dir / "model" / MODEL_UID).read_bytes() == (folder / "model.zip").read_bytes()
    recorded = json.loads((trained.data_dir / "model_metadata" / f"{MODEL_UID}.json").read_text())
    assert recorded["model_accuracy"] == float((folder / "model_accuracy.txt").read_text())
    assert f"recorded accuracy {recorded['model_accuracy']} for model {MODEL_UID}" in trained.results[UPLOAD].output


def test_credentials_never_show_in_events(trained: Trained) -> None:
    shown = "\n".join(what for _, what in trained.events)
    assert SECRET_KEY not in shown and ACCESS_KEY not in shown
    assert "secret_key=***" in shown and "access_key=***" in shown


# -- options: record_accuracy and max_samples, in one short run ---------------------------------------------------


OPTIONS_DATASET_UID, OPTIONS_MODEL_UID = "ds-options", "model-options"


@pytest.fixture(scope="module")
def options_run(pipeline: Pipeline, engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """record_accuracy=false and max_samples=30 out of 60 samples, one epoch."""
    root = tmp_path_factory.mktemp("options")
    dataset = seed_with_cli(root / "platform", OPTIONS_DATASET_UID, 60)
    events: list[tuple[str, str]] = []
    with PlatformServer(root / "platform", {ACCESS_KEY: SECRET_KEY}) as server:
        options = {
            "training_dataset_uid": OPTIONS_DATASET_UID,
            "model_uid": OPTIONS_MODEL_UID,
            "record_accuracy": "false",
            "max_samples": "30",
            "epochs": "1",
            "batch_size": "8",
        }
        steps = plan(pipeline, server.port, **options)
        outcome = execute(pipeline.workflow, engine, root / "work", server.port, events, **options)
    assert outcome.failure is None, outcome.failure
    return Trained(dataset, server.data_dir, steps[1].image, {r.node: r for r in outcome.nodes}, events)


def test_record_accuracy_false_uploads_the_model_and_no_accuracy(options_run: Trained) -> None:
    folder = options_run.results[TRAINING].outputs["training-output"]
    assert sorted(p.name for p in folder.iterdir()) == ["model.zip"]
    assert (options_run.data_dir / "model" / OPTIONS_MODEL_UID).read_bytes() == (folder / "model.zip").read_bytes()
    assert not (options_run.data_dir / "model_metadata").exists()
    assert f"uploaded model {OPTIONS_MODEL_UID}" in options_run.results[UPLOAD].output
    assert "recorded accuracy" not in options_run.results[UPLOAD].output
    assert "accuracy of the last epoch" not in options_run.results[TRAINING].output


def test_max_samples_trains_on_that_many_samples(options_run: Trained) -> None:
    output = options_run.results[TRAINING].output
    assert "samples: 24 train, 3 validate, 3 test" in output  # 30 of the 60, split 80/10/10
    # One epoch of 24 samples in batches of 8: a single progress line of 3 batches.
    assert len(re.findall(r"^3/3 - ", output, re.MULTILINE)) == 1, output


# -- failures: each a clear error, a non-zero exit, and no later step -------------------------------------------


def test_wrong_credentials_fail_the_download_step(pipeline, engine, platform_server, tmp_path) -> None:
    message, _, _ = run_failing(
        pipeline, engine, tmp_path / "work", platform_server.port, DOWNLOAD, secret_key="not-the-secret"
    )
    assert "PlatformError: login as '***'" in message and "HTTP 401" in message
    assert "not-the-secret" not in message
    assert not (tmp_path / "work" / TRAINING).exists() and not (platform_server.data_dir / "model").exists()


def test_unknown_dataset_uid_fails_the_download_step(pipeline, engine, platform_server, tmp_path) -> None:
    message, _, _ = run_failing(
        pipeline, engine, tmp_path / "work", platform_server.port, DOWNLOAD, training_dataset_uid="ds-missing"
    )
    assert "download of training_dataset 'ds-missing'" in message and "HTTP 404" in message
    assert files_under(tmp_path / "work" / DOWNLOAD / f"{DOWNLOAD}-output") == []  # no partial file left


def test_download_step_survives_server_errors_then_succeeds(pipeline, engine, make_fault_proxy, tmp_path) -> None:
    proxy = make_fault_proxy([Fault("status", 500), Fault("pass"), Fault("status", 503)])  # login, login, download
    outcome = execute(only(pipeline, DOWNLOAD), engine, tmp_path / "work", proxy.port)
    [result] = outcome.nodes
    assert outcome.failure is None, outcome.failure
    assert proxy.faults_left == 0 and proxy.requests_seen == 4
    assert "HTTP 500" in result.output and "HTTP 503" in result.output and "trying again" in result.output
    with zipfile.ZipFile(result.outputs[f"{DOWNLOAD}-output"] / "training_dataset.zip") as archive:
        assert archive.testzip() is None


def test_silent_server_fails_the_download_step_in_bounded_time(pipeline, engine, silent_server, tmp_path) -> None:
    message, _, seconds = run_failing(pipeline, engine, tmp_path, silent_server.port, DOWNLOAD, platform_timeout="2")
    assert "failed after 5 attempt(s): timed out: no answer within 2s" in message
    assert seconds < 60, f"took {seconds:.0f}s"  # 5 waits of 2 s and back-offs of 7.5 s in all, plus start-up


def _seed_zip(server: PlatformServer, uid: str, members: Mapping[str, bytes], path: Path) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    seed_dataset(server.data_dir, uid, path)


def _safe_npy() -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, pack_training_dataset(np.zeros((10, 100, 3)), np.zeros((10, 3)), format="safe"))
    return buffer.getvalue()


def test_dataset_zip_with_parent_member_fails_the_training_step(pipeline, engine, platform_server, tmp_path) -> None:
    _seed_zip(
        platform_server,
        "ds-escape",
        {"training_dataset.npy": _safe_npy(), "../escape.txt": b"x"},
        tmp_path / "escape.zip",
    )
    message, _, _ = run_failing(
        pipeline, engine, tmp_path / "work", platform_server.port, TRAINING, training_dataset_uid="ds-escape"
    )
    assert "ArchiveError:" in message and "member '../escape.txt' has a '..' component" in message
    assert files_under(tmp_path / "work" / TRAINING / "training-output") == []
    assert not (platform_server.data_dir / "model").exists()


def test_corrupt_dataset_zip_fails_the_training_step(pipeline, engine, platform_server, tmp_path) -> None:
    data = bytearray(write_training_dataset(tmp_path / "good.zip", samples=50, format="safe").read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(b ^ 0xFF for b in data[middle : middle + 64])
    (tmp_path / "corrupt.zip").write_bytes(data)
    seed_dataset(platform_server.data_dir, "ds-corrupt", tmp_path / "corrupt.zip")
    message, _, _ = run_failing(
        pipeline, engine, tmp_path / "work", platform_server.port, TRAINING, training_dataset_uid="ds-corrupt"
    )
    assert "ArchiveError:" in message and "member 'training_dataset.npy' is corrupt: Bad CRC-32" in message
    assert not (platform_server.data_dir / "model").exists()


def test_cli_run_exits_11_naming_the_failing_step(pipeline, platform_server, tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("PLATFORM_ACCESS_KEY", ACCESS_KEY)
    monkeypatch.setenv("PLATFORM_SECRET_KEY", SECRET_KEY)
    # The project's configuration, so that run checks the images against the map they were compiled from.
    code = cli.main(
        [
            "--config",
            str(pipeline.path.parent / "pyproject.toml"),
            "run",
            str(pipeline.path),
            "--workdir",
            str(tmp_path / "work"),
            "-p",
            "training_task_uid=task-cli",
            "-p",
            "training_dataset_uid=ds-unknown",
            "-p",
            "model_uid=model-cli",
            "-p",
            "learning_rate=0.01",
            "-p",
            "host=127.0.0.1",
            "-p",
            f"port={platform_server.port}",
            "--allow-host",
            f"127.0.0.1:{platform_server.port}",
        ]
    )
    captured = capsys.readouterr()
    assert code == 11
    assert "buildtool: error: step download-training-dataset failed with exit code 1" in captured.err
    assert "HTTP 404" in captured.err and "secret_key=***" in captured.out
    assert SECRET_KEY not in captured.out + captured.err


def _seed_npy(server: PlatformServer, uid: str, array: np.ndarray, path: Path) -> None:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    _seed_zip(server, uid, {"training_dataset.npy": buffer.getvalue()}, path)


def test_platform_dataset_of_wrong_shapes_fails_the_training_step_naming_the_shape(
    pipeline, engine, platform_server, tmp_path
) -> None:
    pairs = pack_training_dataset(np.zeros((10, 100, 3)), np.zeros((10, 3)), format="seed")
    pairs[3, 0] = np.zeros((50, 3), np.float32)
    _seed_npy(platform_server, "ds-shapes", pairs, tmp_path / "shapes.zip")
    message, _, _ = run_failing(
        pipeline, engine, tmp_path / "work", platform_server.port, TRAINING, training_dataset_uid="ds-shapes"
    )
    [line] = [line for line in message.splitlines() if "(50, 3)" in line]
    assert line.startswith("platform_client.errors.DatasetError: ")
    assert line.endswith("training_dataset.npy: pair 3: x has shape (50, 3), expected (100, 3)")
    assert not (platform_server.data_dir / "model").exists()


class _Payload:
    def __init__(self, reduce: tuple) -> None:
        self.reduce = reduce

    def __reduce__(self) -> tuple:
        return self.reduce


@pytest.mark.parametrize(
    ("allow_pickle", "payload", "fragment"),
    [
        ("false", lambda marker: (os.system, (f"touch {marker}",)), "refused: the object array refers to posix.system"),
        (
            "false",
            lambda marker: (eval, (f"__import__('pathlib').Path({marker!r}).touch()",)),
            "refused: the object array refers to builtins.eval",
        ),
        # Full unpickling (for a source you trust) does run it: the marker is a real witness.
        (
            "true",
            lambda marker: (os.system, (f"touch {marker}",)),
            "pair 0: y is of type int, expected a numeric array",
        ),
    ],
    ids=["os.system", "builtins.eval", "full unpickling runs it"],
)
def test_platform_dataset_carrying_code_is_refused_in_the_training_image(
    pipeline, engine, platform_server, tmp_path, allow_pickle, payload, fragment
) -> None:
    # The payload would touch a file in the training step's output folder, which is a host folder.
    [output] = plan(pipeline, platform_server.port)[1].outputs
    marker = f"{os.path.dirname(output.path)}/ran"  # the folder around the output path is the host's
    pairs = pack_training_dataset(np.zeros((4, 100, 3)), np.zeros((4, 3)), format="seed")
    pairs[0, 1] = _Payload(payload(marker))
    uid = "ds-payload"
    _seed_npy(platform_server, uid, pairs, tmp_path / "payload.zip")
    message, _, _ = run_failing(
        pipeline,
        engine,
        tmp_path / "work",
        platform_server.port,
        TRAINING,
        training_dataset_uid=uid,
        allow_pickle_dataset=allow_pickle,
    )
    assert "DatasetError: " in message and fragment in message, message
    ran = (tmp_path / "work" / TRAINING / "training-output" / "ran").exists()
    assert ran == (allow_pickle == "true")
    assert not (platform_server.data_dir / "model").exists()
