"""plan_run on the real pipeline compiled by kfp against a map of invented digests: no engine.

Some tests drive execute_run with a recording stand-in for the engine (it writes each output file as a
step would), to check the mounts, the network mode and the stop after a failing step; the real engine and
images are in tests/integration/test_steps_in_images.py and test_run_corpus.py.
"""

import copy
import os
from pathlib import Path

import pytest
import yaml

from buildtool import cli
from buildtool.dev import run_checks, run_exec, run_files, run_outcome, run_plan, run_preview, run_workflow
from buildtool.engine import Bind, ContainerResult
from buildtool.errors import EngineError, ImageMapError, RunError

from ..conftest import write_project
from ..helpers import write_lock
from ..reliability.run_fixtures import SECRET_NAME, RecordingEngine, compile_project

SECRET = "sk-unit-7d1e-do-not-show"
ARGUMENTS = {
    "training_task_uid": "task-1",
    "training_dataset_uid": "ds-1",
    "model_uid": "model-1",
    "learning_rate": "0.01",
    "host": "127.0.0.1",
    "port": "8080",
    "access_key": "tester",
    "secret_key": SECRET,
}
DOWNLOAD, TRAINING, UPLOAD = "download-training-dataset", "training", "upload-model"


@pytest.fixture(scope="module")
def _compiled_once(tmp_path_factory):
    return compile_project(write_project(tmp_path_factory.mktemp("project")))


@pytest.fixture
def compiled(_compiled_once):
    """(workflow, step -> pinned image, its path) of the real pipeline. kfp compiles it once for the module;
    each test gets its own copy of the workflow (tests edit it), and only reads the file."""
    workflow, images, path = _compiled_once
    return copy.deepcopy(workflow), dict(images), path


def preview(workflow, arguments):
    return run_preview.preview(run_workflow.plan_run(workflow, arguments))


def option(step, flag):
    """The value that follows `flag` in the step's args."""
    return step.args[step.args.index(flag) + 1]


def test_plan_has_the_three_steps_in_order_with_placeholders_resolved(compiled):
    workflow, images, _ = compiled
    steps = preview(workflow, {**ARGUMENTS, "epochs": "5"})
    assert [s.task for s in steps] == [DOWNLOAD, TRAINING, UPLOAD]
    assert [s.template for s in steps] == [DOWNLOAD, TRAINING, UPLOAD]
    assert [s.image for s in steps] == [images["download_training_dataset"], images["training"], images["upload_model"]]
    for step in steps:
        assert step.command[:2] == ("sh", "-ec")
        assert not any("{{" in part for part in step.args), step.task
        assert "def " in step.command[3]  # kfp's serialized step function
    download, training, upload = steps
    assert option(download, "--training-dataset-uid") == "ds-1"
    assert option(download, "--secret-key") == SECRET and option(download, "--access-key") == "tester"
    assert option(download, "--platform-timeout") == "300.0"  # the pipeline's default
    assert option(training, "--learning-rate") == "0.01"
    assert option(training, "--epochs") == "5"  # given
    assert option(training, "--batch-size") == "4" and option(training, "--max-samples") == "0"  # defaults
    assert option(upload, "--model-uid") == "model-1" and option(upload, "--port") == "8080"
    assert dict(training.parameters)["training_task_uid"] == "task-1"


def test_plan_wires_each_output_artifact_to_the_step_that_reads_it(compiled):
    download, training, upload = preview(compiled[0], ARGUMENTS)
    assert download.inputs == ()
    assert download.outputs == (run_plan.OutputFile(f"{DOWNLOAD}-output", "/tmp/outputs/output/data"),)
    assert option(download, "--output") == "/tmp/outputs/output/data"
    assert training.inputs == (
        run_plan.InputArtifact(
            f"{DOWNLOAD}-output", "/tmp/inputs/input/data", f"tasks.{DOWNLOAD}.outputs.artifacts.{DOWNLOAD}-output"
        ),
    )
    assert option(training, "--input") == "/tmp/inputs/input/data"
    assert training.outputs == (run_plan.OutputFile("training-output", "/tmp/outputs/output/data"),)
    assert upload.inputs == (
        run_plan.InputArtifact(
            "training-output", "/tmp/inputs/input/data", f"tasks.{TRAINING}.outputs.artifacts.training-output"
        ),
    )
    assert upload.outputs == ()


def test_plan_follows_dependencies_not_the_listed_order(compiled):
    workflow = copy.deepcopy(compiled[0])
    dag = next(t for t in workflow["spec"]["templates"] if t["name"] == workflow["spec"]["entrypoint"])["dag"]
    dag["tasks"].reverse()
    assert [s.task for s in preview(workflow, ARGUMENTS)] == [DOWNLOAD, TRAINING, UPLOAD]
    dag["tasks"][-1]["dependencies"] = [UPLOAD]  # download now waits for upload, which waits for it
    with pytest.raises(RunError, match="cycle"):
        preview(workflow, ARGUMENTS)


def test_missing_required_parameters_are_named(compiled):
    arguments = {k: v for k, v in ARGUMENTS.items() if k not in ("model_uid", "learning_rate")}
    with pytest.raises(RunError, match=r"missing required parameter\(s\): model_uid, learning_rate") as caught:
        run_workflow.plan_run(compiled[0], arguments)
    assert SECRET not in str(caught.value)


def test_unknown_parameter_is_refused_with_the_valid_names(compiled):
    with pytest.raises(RunError, match=r"unknown parameter\(s\) epoch; the pipeline takes: .*epochs"):
        run_workflow.plan_run(compiled[0], {**ARGUMENTS, "epoch": "3"})


def test_describe_and_repr_mask_the_credentials(compiled):
    steps = preview(compiled[0], ARGUMENTS)
    text = "\n".join(run_preview.describe(steps)) + repr(steps)
    assert SECRET not in text and "tester" not in text
    assert "secret_key=***" in text and "access_key=***" in text and "training_dataset_uid=ds-1" in text
    assert steps[0].mask(f"login as 'tester' with {SECRET}") == "login as '***' with ***"


def test_run_arguments_take_credentials_from_the_environment(compiled):
    workflow = compiled[0]
    env = {"PLATFORM_ACCESS_KEY": "env-key", "PLATFORM_SECRET_KEY": "env-secret"}
    assert run_workflow.run_arguments(workflow, ["host=h", "port=1"], env) == {
        "host": "h",
        "port": "1",
        "access_key": "env-key",
        "secret_key": "env-secret",
    }
    assert run_workflow.run_arguments(workflow, ["access_key=given", "x=a=b"], env)["access_key"] == "given"
    assert run_workflow.run_arguments(workflow, ["x=a=b"], {})["x"] == "a=b"
    with pytest.raises(RunError, match=r"parameter #2 is not NAME=VALUE") as caught:
        run_workflow.run_arguments(workflow, ["host=h", SECRET], {})
    assert SECRET not in str(caught.value)
    with pytest.raises(RunError, match="given twice"):
        run_workflow.run_arguments(workflow, ["host=h", "host=i"], {})


def execute(workflow, engine, workdir, events=None, arguments=ARGUMENTS):
    plan = run_workflow.plan_run(workflow, arguments)
    return run_exec.execute_run(plan, engine, workdir, events or (lambda who, what: None))


def test_execute_mounts_artifacts_and_stops_after_a_failing_step(compiled, tmp_path):
    engine = RecordingEngine(
        [
            ContainerResult(0, "downloaded\n"),
            ContainerResult(3, "".join(f"line {n}\n" for n in range(40)) + f"bad key {SECRET}\n"),
        ]
    )
    events = []
    outcome = execute(compiled[0], engine, tmp_path / "work", lambda who, what: events.append((who, what)))
    assert len(engine.calls) == 2  # upload never ran
    assert [(n.node, n.state) for n in outcome.nodes] == [
        (DOWNLOAD, "succeeded"),
        (TRAINING, "failed"),
        (UPLOAD, "omitted"),
    ]
    message = outcome.failure
    assert message.startswith("step training failed with exit code 3")
    assert "line 39" in message and "line 10\n" not in message and SECRET not in message and "bad key ***" in message
    (_, argv, first), (_, _, second) = engine.calls
    out = str((tmp_path / "work" / DOWNLOAD / f"{DOWNLOAD}-output").resolve())
    assert argv == preview(compiled[0], ARGUMENTS)[0].argv and first["network_mode"] == "none"
    # The folder around the output path is mounted: the step writes the file itself at the path.
    assert first["binds"] == [Bind(out, "/tmp/outputs/output")]
    assert second["binds"][0] == Bind(f"{out}/data", "/tmp/inputs/input/data", read_only=True)
    assert not any(SECRET in what for _, what in events)
    assert (DOWNLOAD, "| downloaded") in events
    assert any(line.startswith(f"{UPLOAD}  ") and "omitted" in line for line in run_outcome.summary(outcome))


class EmptyEngine(RecordingEngine):
    """Holds no image until it pulls one; `refuse` makes every pull fail."""

    def __init__(self, results, refuse=False):
        super().__init__(results)
        self.pulled, self.refuse = [], refuse

    def image_id(self, ref):
        return "sha256:" + "0" * 64 if ref in self.pulled else None

    def pull(self, ref, progress=None):
        if self.refuse:
            raise EngineError(f"pull of {ref} failed: manifest unknown")
        self.pulled.append(ref)


def test_execute_pulls_the_pinned_images_the_engine_lacks(compiled, tmp_path):
    steps = preview(compiled[0], ARGUMENTS)
    engine = EmptyEngine([ContainerResult(0, "")] * 3)
    assert execute(compiled[0], engine, tmp_path / "work").failure is None
    assert sorted(engine.pulled) == sorted({s.image for s in steps})
    assert [image for image, _, _ in engine.calls] == [s.image for s in steps]


def test_execute_names_an_image_it_cannot_pull(compiled, tmp_path):
    engine = EmptyEngine([], refuse=True)
    with pytest.raises(RunError, match=r"image \S+@sha256:\w+ is neither in the local engine nor pullable: pull of"):
        execute(compiled[0], engine, tmp_path / "work")
    assert engine.calls == []


def test_execute_refuses_a_work_folder_holding_an_earlier_output(compiled, tmp_path):
    stale = tmp_path / TRAINING / "training-output" / "model.zip"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"old")
    engine = RecordingEngine([])
    with pytest.raises(RunError, match="is not an empty folder"):
        execute(compiled[0], engine, tmp_path)
    assert engine.calls == []


def test_cli_run_dry_run_prints_the_plan_masked(compiled, capsys, monkeypatch):
    _, _, path = compiled
    monkeypatch.setenv("PLATFORM_ACCESS_KEY", "tester")
    monkeypatch.setenv("PLATFORM_SECRET_KEY", SECRET)
    params = [p for k, v in ARGUMENTS.items() if k not in ("access_key", "secret_key") for p in ("-p", f"{k}={v}")]
    config = ["--config", str(path.parent / "pyproject.toml")]
    assert cli.main([*config, "run", str(path), "--dry-run", *params]) == 0
    out = capsys.readouterr().out
    assert "1. download-training-dataset: " in out and "secret_key=***" in out and SECRET not in out
    assert f"every image is pinned and matches {path.parent / 'image_map.yaml'}" in out
    assert cli.main([*config, "run", str(path), "--dry-run", "-p", "host=h"]) == RunError.exit_code == 11
    assert "missing required parameter(s): training_task_uid, training_dataset_uid" in capsys.readouterr().err


# -- environment variables from Kubernetes Secrets (kfp's use_k8s_secret) -------------------------------------------

HOST_ENV = {"PLATFORM_ACCESS_KEY": "tester", "PLATFORM_SECRET_KEY": SECRET}


@pytest.fixture(scope="module")
def _with_secret_once(tmp_path_factory):
    return compile_project(write_project(tmp_path_factory.mktemp("project")), k8s_secret=True)


@pytest.fixture
def with_secret(_with_secret_once):
    """The real pipeline with download and upload taking PLATFORM_* from the Secret, as kfp compiles it
    (once for the module; a copy of the workflow for each test)."""
    workflow, images, path = _with_secret_once
    return copy.deepcopy(workflow), dict(images), path


def test_secret_variables_come_from_the_host_environment_not_argv(with_secret):
    workflow = with_secret[0]
    params = [f"{k}={v}" for k, v in ARGUMENTS.items() if k not in ("access_key", "secret_key")]
    steps = run_preview.preview(run_workflow.plan_checked(workflow, params, HOST_ENV, with_secret[1]))
    download, training, upload = steps
    for step in (download, upload):
        assert step.environment == HOST_ENV
        assert [v.secret for v in step.env] == [f"{SECRET_NAME}/access_key", f"{SECRET_NAME}/secret_key"]
        assert not any(SECRET in part for part in step.argv)
        # The parameters stay empty, so the step reads its environment.
        assert option(step, "--secret-key") == "" and option(step, "--access-key") == ""
        assert step.mask(f"x {SECRET} y") == "x *** y"
    assert training.env == () and training.environment == {}
    text = "\n".join(run_preview.describe(steps)) + repr(steps)
    assert SECRET not in text and "tester" not in text
    assert (
        f"   env: PLATFORM_ACCESS_KEY=*** (host $PLATFORM_ACCESS_KEY, for secret {SECRET_NAME}/access_key), "
        f"PLATFORM_SECRET_KEY=*** (host $PLATFORM_SECRET_KEY, for secret {SECRET_NAME}/secret_key)"
    ) in text


@pytest.mark.parametrize(
    "environ", [{"PLATFORM_ACCESS_KEY": "tester"}, {**HOST_ENV, "PLATFORM_SECRET_KEY": ""}], ids=["absent", "empty"]
)
def test_a_secret_variable_the_host_lacks_is_named(with_secret, environ):
    params = [f"{k}={v}" for k, v in ARGUMENTS.items() if k not in ("access_key", "secret_key")]
    with pytest.raises(
        RunError,
        match=r"task download-training-dataset \(template download-training-dataset\): "
        r"container.env PLATFORM_SECRET_KEY comes from key secret_key of the "
        rf"Kubernetes secret {SECRET_NAME}; set PLATFORM_SECRET_KEY in the environment",
    ):
        run_workflow.plan_checked(with_secret[0], params, environ, with_secret[1])


def test_plain_env_values_pass_through_resolved(compiled):
    workflow = copy.deepcopy(compiled[0])
    template = next(t for t in workflow["spec"]["templates"] if t["name"] == TRAINING)
    template["container"]["env"] = [
        {"name": "TF_CPP_MIN_LOG_LEVEL", "value": "2"},
        {"name": "RATE", "value": "{{inputs.parameters.learning_rate}}"},
    ]
    training = run_preview.preview(
        run_workflow.plan_checked(workflow, [f"{k}={v}" for k, v in ARGUMENTS.items()], {}, compiled[1])
    )[1]
    assert training.environment == {"TF_CPP_MIN_LOG_LEVEL": "2", "RATE": "0.01"}
    assert [v.secret for v in training.env] == [None, None]
    assert "   env: TF_CPP_MIN_LOG_LEVEL=2, RATE=0.01" in run_preview.describe([training])


def test_execute_hands_the_environment_and_the_run_label_to_the_engine(with_secret, tmp_path):
    params = [f"{k}={v}" for k, v in ARGUMENTS.items() if k not in ("access_key", "secret_key")]
    engine = RecordingEngine([ContainerResult(0, f"saw {SECRET}\n")] * 3)
    events = []
    plan = run_workflow.plan_checked(with_secret[0], params, HOST_ENV, with_secret[1])
    outcome = run_exec.execute_run(plan, engine, tmp_path / "work", lambda who, what: events.append((who, what)))
    assert outcome.failure is None
    environments = [options["environment"] for _, _, options in engine.calls]
    assert environments == [HOST_ENV, {}, HOST_ENV]
    assert all(
        options["labels"] == {run_plan.RUN_LABEL: str((tmp_path / "work").resolve())} for _, _, options in engine.calls
    )
    assert not any(SECRET in part for _, argv, _ in engine.calls for part in argv)
    assert not any(SECRET in what for _, what in events) and (DOWNLOAD, "| saw ***") in events


def test_run_arguments_leave_secret_parameters_empty_when_the_workflow_takes_the_variables(with_secret):
    arguments = run_workflow.run_arguments(with_secret[0], ["host=h"], HOST_ENV)
    assert arguments == {"host": "h", "access_key": "", "secret_key": ""}


def test_cli_run_without_a_map_checks_pins_only_and_says_so(compiled, tmp_path, capsys, monkeypatch):
    _, images, path = compiled
    monkeypatch.chdir(tmp_path)
    params = [item for k, v in ARGUMENTS.items() for item in ("-p", f"{k}={v}")]
    assert cli.main(["--config", str(tmp_path / "absent.toml"), "run", str(path), "--dry-run", *params]) == 0
    captured = capsys.readouterr()
    assert "warning: no image map found; images were checked for digest pins only" in captured.err
    assert "1. download-training-dataset: " in captured.out
    # Given explicitly, a map that names other images is enforced.
    other = tmp_path / "other_map.yaml"
    other.write_text("steps:\n" + "".join(f"  {step}: {ref[:-1]}f\n" for step, ref in images.items()))
    assert (
        cli.main(
            [
                "--config",
                str(tmp_path / "absent.toml"),
                "run",
                str(path),
                "--image-map",
                str(other),
                "--dry-run",
                *params,
            ]
        )
        == 11
    )
    assert "container.image:" in capsys.readouterr().err


def test_other_secret_variables_pass_only_when_named(compiled):
    workflow = copy.deepcopy(compiled[0])
    template = next(t for t in workflow["spec"]["templates"] if t["name"] == TRAINING)
    template["container"]["env"] = [{"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "t"}}}]
    params = [f"{k}={v}" for k, v in ARGUMENTS.items()]
    with pytest.raises(
        RunError,
        match=r"container.env HF_TOKEN asks for the host's HF_TOKEN .* "
        r"add --secret-env HF_TOKEN if you mean it",
    ):
        run_workflow.plan_checked(workflow, params, {"HF_TOKEN": "hf-1"}, compiled[1])
    steps = run_preview.preview(
        run_workflow.plan_checked(
            workflow, params, {"HF_TOKEN": "hf-1"}, compiled[1], run_plan.SECRET_VARIABLES | {"HF_TOKEN"}
        )
    )
    assert steps[1].environment == {"HF_TOKEN": "hf-1"} and "hf-1" in steps[0].secrets


def test_cli_secret_env_names_an_extra_variable(compiled, capsys, monkeypatch):
    workflow, _, path = compiled
    template = next(t for t in workflow["spec"]["templates"] if t["name"] == TRAINING)
    template["container"]["env"] = [{"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "t"}}}]
    path.write_text(yaml.safe_dump(workflow))
    monkeypatch.setenv("HF_TOKEN", "hf-secret-value")
    command = [
        "--config",
        str(path.parent / "pyproject.toml"),
        "run",
        str(path),
        "--dry-run",
        *(item for k, v in ARGUMENTS.items() for item in ("-p", f"{k}={v}")),
    ]
    assert cli.main(command) == 11
    assert cli.main([*command, "--secret-env", "HF_TOKEN"]) == 0
    out = capsys.readouterr().out
    assert "env: HF_TOKEN=*** (host $HF_TOKEN, for secret hf/t)" in out and "hf-secret-value" not in out


class PlantingEngine(RecordingEngine):
    """While the first step runs, something else plants a symlink where the next step's folder goes."""

    def __init__(self, results, link, target):
        super().__init__(results)
        self.link, self.target = link, target

    def call(self, image, command, **options):
        if not self.calls:
            self.link.parent.mkdir(parents=True, exist_ok=True)
            self.link.symlink_to(self.target, target_is_directory=True)
        return super().call(image, command, **options)


@pytest.mark.parametrize("depth", ["task", "artifact"])
def test_a_symlink_planted_during_the_run_is_refused_before_it_is_mounted(compiled, tmp_path, depth):
    work, outside = tmp_path / "work", tmp_path / "outside"
    outside.mkdir()
    link = work / TRAINING if depth == "task" else work / TRAINING / "training-output"
    engine = PlantingEngine([ContainerResult(0, "")] * 3, link, outside)
    outcome = execute(compiled[0], engine, work)
    assert (
        f"{link.resolve() if depth == 'artifact' else link}: a symlink in the work folder" in outcome.failure
        or f"{link}: a symlink in the work folder" in outcome.failure
    )
    assert len(engine.calls) == 1 and list(outside.iterdir()) == []


def test_make_folder_refuses_a_symlink_and_creates_inside(tmp_path):
    root, outside = tmp_path / "work", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "t").mkdir()
    (root / "t" / "a").symlink_to(outside)
    with pytest.raises(RunError, match="a symlink in the work folder"):
        run_files.make_folder(root.resolve(), "t", "a")
    assert run_files.make_folder(root.resolve(), "t", "b") == (root / "t" / "b").resolve()


def test_run_checks_against_the_given_map_else_the_configured_one_else_none(project, tmp_path):
    loaded, lock = write_lock(project)
    no_config = tmp_path / "absent.toml"

    def not_loaded():
        raise AssertionError("the configuration was loaded although it was not needed")

    found, path = run_checks.image_map_for_run(None, loaded.path, lambda: loaded)
    assert path == loaded.image_map and found is not None and found.steps == lock.steps
    found, path = run_checks.image_map_for_run(loaded.image_map, no_config, not_loaded)  # --image-map wins
    assert path == loaded.image_map and found is not None and found.steps == lock.steps
    assert run_checks.image_map_for_run(None, no_config, not_loaded) == (None, None)
    loaded.image_map.unlink()
    assert run_checks.image_map_for_run(None, loaded.path, lambda: loaded) == (None, None)  # pins checked alone
    with pytest.raises(ImageMapError, match="not found"):  # a named map that is missing is refused
        run_checks.image_map_for_run(loaded.image_map, loaded.path, lambda: loaded)


# -- what a step leaves as its outputs -------------------------------------------------------------------------------


class WritingEngine(RecordingEngine):
    """A first step that leaves `make(folder)` in the folder around its output, as a hostile step could."""

    def __init__(self, make):
        super().__init__([ContainerResult(0, "")] * 3)
        self.make = make

    def call(self, image, command, **options):
        if self.calls:
            return super().call(image, command, **options)
        self.calls.append((image, command, options))
        for bind in options["binds"]:
            self.make(Path(bind.source))
        return self.results.pop(0)


NOT_A_FILE = "the step left something other than a file or a folder there"


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (lambda folder: (folder / "data").symlink_to("/etc"), NOT_A_FILE),
        (lambda folder: None, "the step wrote nothing at data"),
        (lambda folder: os.mkfifo(folder / "data"), NOT_A_FILE),
    ],
    ids=["symlink-to-etc", "nothing", "fifo"],
)
def test_an_output_that_is_not_a_file_or_folder_fails_the_step_and_is_never_mounted(compiled, tmp_path, make, fragment):
    engine = WritingEngine(make)
    outcome = execute(compiled[0], engine, tmp_path / "work")
    assert len(engine.calls) == 1
    assert f"task {DOWNLOAD}: output artifact {DOWNLOAD}-output: {fragment}" in outcome.failure
    assert [n.state for n in outcome.nodes] == ["failed", "omitted", "omitted"]


def test_output_parameters_are_bounded_utf8_files(tmp_path):
    good = tmp_path / "good"
    good.write_text("42")
    assert run_files.read_parameter(good, "p") == "42"
    big = tmp_path / "big"
    big.write_bytes(b"1" * (run_files.MAX_PARAMETER_BYTES + 1))
    with pytest.raises(RunError, match="over the 262144-byte limit for a parameter"):
        run_files.read_parameter(big, "p")
    binary = tmp_path / "binary"
    binary.write_bytes(b"\xff\xfe")
    with pytest.raises(RunError, match="not UTF-8"):
        run_files.read_parameter(binary, "p")
    link = tmp_path / "link"
    link.symlink_to(good)
    with pytest.raises(RunError, match="other than a file or a folder"):
        run_files.read_parameter(link, "p")
    with pytest.raises(RunError, match="a folder, not a file"):
        run_files.read_parameter(tmp_path, "p")
