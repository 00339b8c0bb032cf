"""`buildtool run` against hostile workflows, parameters and work folders: one row per case.

Each row edits the real pipeline (compiled by kfp against its image map), then runs
`buildtool run` twice through `cli.main`, with --dry-run and without (rows about the
work folder only without), and checks the same invariants after every row:

- the documented exit code, and stderr one line `buildtool: error: ...` naming the template/field;
- no secret (given by -p and by the environment) in stdout or stderr;
- the file tree around the work folder unchanged, byte for byte (image_map.yaml and pipeline.yaml
  included), and no folder created outside the work folder;
- the Docker engine never opened, so no container started: the refusal comes before it.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from buildtool import cli, engine
from buildtool.dev import run_checks
from buildtool.errors import RunError

from ..conftest import write_project
from .run_fixtures import ACCESS, ARGUMENTS, ENVIRONMENT, SECRET, SECRET_NAME, compile_project

DOWNLOAD, TRAINING, UPLOAD = "download-training-dataset", "training", "upload-model"
DOWNLOAD_OUT = f"{DOWNLOAD}-output"
EVIL = "evil.example.com/miner:latest"
PINNED_ELSEWHERE = "evil.example.com/miner@sha256:" + "e" * 64

#: Bound on one refused run, on a machine shared with other work.
SECONDS = 15
Workflow = dict[str, Any]


# -- edits of the compiled workflow --------------------------------------------------------------------------------


def template(workflow: Workflow, name: str) -> dict[str, Any]:
    return next(t for t in workflow["spec"]["templates"] if t["name"] == name)


def dag_task(workflow: Workflow, name: str) -> dict[str, Any]:
    return next(t for t in template(workflow, workflow["spec"]["entrypoint"])["dag"]["tasks"] if t["name"] == name)


def _rewrite(node: Any, change: Callable[[str, str], str]) -> Any:
    """`node` with every string value passed through change(key, value)."""
    if isinstance(node, dict):
        return {k: change(k, v) if isinstance(v, str) else _rewrite(v, change) for k, v in node.items()}
    if isinstance(node, list):
        return [_rewrite(v, change) for v in node]
    return node


def rename_artifact(old: str, new: str) -> Callable[[Workflow, Path], Workflow]:
    """The artifact renamed everywhere: where it is written, read and passed."""

    def edit(workflow: Workflow, tmp: Path) -> Workflow:
        new_name = new.format(tmp=tmp)
        return _rewrite(
            workflow,
            lambda key, value: (
                new_name
                if key == "name" and value == old
                else value.replace(f".artifacts.{old}}}}}", f".artifacts.{new_name}}}}}")
                if key == "from"
                else value
            ),
        )

    return edit


def rename_task(old: str, new: str) -> Callable[[Workflow, Path], Workflow]:
    """The DAG task renamed in the DAG, in its dependents' dependencies and in the artifacts they read."""

    def edit(workflow: Workflow, tmp: Path) -> Workflow:
        new_name = new.format(tmp=tmp)
        for task in template(workflow, workflow["spec"]["entrypoint"])["dag"]["tasks"]:
            if task["name"] == old:
                task["name"] = new_name
            task["dependencies"] = [new_name if d == old else d for d in task.get("dependencies", [])]
            for artifact in task.get("arguments", {}).get("artifacts", []):
                artifact["from"] = artifact["from"].replace(f"{{{{tasks.{old}.", f"{{{{tasks.{new_name}.")
        return workflow

    return edit


def rename_template(old: str, new: str) -> Callable[[Workflow, Path], Workflow]:
    def edit(workflow: Workflow, tmp: Path) -> Workflow:
        template(workflow, old)["name"] = new
        for task in template(workflow, workflow["spec"]["entrypoint"])["dag"]["tasks"]:
            if task["template"] == old:
                task["template"] = new
        return workflow

    return edit


def setting(where: Callable[[Workflow], dict[str, Any]], key: str, value: Any) -> Callable[[Workflow, Path], Workflow]:
    """Set `key` to `value` in the mapping `where` picks."""

    def edit(workflow: Workflow, tmp: Path) -> Workflow:
        where(workflow)[key] = value
        return workflow

    return edit


def spec(workflow: Workflow) -> dict[str, Any]:
    return workflow["spec"]


def download(workflow: Workflow) -> dict[str, Any]:
    return template(workflow, DOWNLOAD)


def download_container(workflow: Workflow) -> dict[str, Any]:
    return template(workflow, DOWNLOAD)["container"]


def training_task(workflow: Workflow) -> dict[str, Any]:
    return dag_task(workflow, TRAINING)


def download_output(workflow: Workflow) -> dict[str, Any]:
    return template(workflow, DOWNLOAD)["outputs"]["artifacts"][0]


def training_input(workflow: Workflow) -> dict[str, Any]:
    return template(workflow, TRAINING)["inputs"]["artifacts"][0]


def as_script(workflow: Workflow, tmp: Path) -> Workflow:
    """The download step as an Argo script template (its own image, source inline)."""
    container = download(workflow).pop("container")
    download(workflow)["script"] = {"image": EVIL, "command": ["sh"], "source": "cat /etc/shadow"}
    del container
    return workflow


def with_annotation_image(workflow: Workflow, tmp: Path) -> Workflow:
    annotations = download(workflow)["metadata"]["annotations"]
    spec_ = json.loads(annotations[run_checks.verify.COMPONENT_SPEC])
    spec_["implementation"]["container"]["image"] = PINNED_ELSEWHERE
    annotations[run_checks.verify.COMPONENT_SPEC] = json.dumps(spec_)
    return workflow


def with_shared_args(workflow: Workflow, tmp: Path) -> Workflow:
    """The same args list in two templates: yaml.dump writes it once with an anchor, then an alias."""
    template(workflow, UPLOAD)["container"]["args"] = download_container(workflow)["args"]
    return workflow


def alias_bomb_in_args(workflow: Workflow, tmp: Path) -> Workflow:
    """Nine levels of ten aliases each: 10^9 strings once expanded, a few hundred bytes as YAML."""
    level: list[Any] = ["lol"] * 10
    for _ in range(8):
        level = [level] * 10
    download_container(workflow)["args"] = level
    return workflow


def many_templates(workflow: Workflow, tmp: Path) -> Workflow:
    """10,000 more templates, in a file under the size cap."""
    spec(workflow)["templates"] += [{"name": f"t{n}", "container": {"image": "x"}} for n in range(10_000)]
    return workflow


def unresolvable_task_output(workflow: Workflow, tmp: Path) -> Workflow:
    template(workflow, TRAINING)["container"]["args"].append("{{tasks.download-training-dataset.outputs.parameters.x}}")
    return workflow


# -- the table -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    id: str
    fragment: str
    edit: Callable[[Workflow, Path], Workflow] | None = None
    #: Replaces the file's bytes (after `edit`), for documents a dict cannot express.
    data: Callable[[bytes], bytes] | None = None
    code: int = RunError.exit_code
    #: Prepares the work folder; such rows run only without --dry-run, which never reads the work folder.
    workdir: Callable[[Path, Path], None] | None = None
    #: -p NAME=VALUE items instead of ARGUMENTS'.
    params: tuple[str, ...] | None = None
    environment: dict[str, str] = field(default_factory=lambda: dict(ENVIRONMENT))
    #: The pipeline compiled with its credentials from a Kubernetes Secret.
    k8s_secret: bool = False
    #: Paths (formatted with tmp=) that must not exist afterwards.
    absent: tuple[str, ...] = ()


def symlink_at(*parts: str) -> Callable[[Path, Path], None]:
    """A symlink planted at workdir/parts..., to a folder outside the work folder."""

    def plant(workdir: Path, tmp: Path) -> None:
        (tmp / "outside").mkdir()
        link = workdir.joinpath(*parts)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(tmp / "outside", target_is_directory=True)

    return plant


def stale_output(workdir: Path, tmp: Path) -> None:
    folder = workdir / DOWNLOAD / DOWNLOAD_OUT
    folder.mkdir(parents=True)
    (folder / "data.zip").write_bytes(b"from an earlier run")


def task_file(workdir: Path, tmp: Path) -> None:
    workdir.mkdir()
    (workdir / DOWNLOAD).write_bytes(b"a file where the task's folder goes")


REFUSED = "is not supported by local runs"
UNSAFE_NAME = "is not a safe name"

ROWS = [
    # Names that become host folders.
    Row(
        "artifact-name-absolute",
        UNSAFE_NAME,
        rename_artifact(DOWNLOAD_OUT, "{tmp}/abs-escape"),
        absent=("{tmp}/abs-escape",),
    ),
    Row(
        "artifact-name-dotdot",
        UNSAFE_NAME,
        rename_artifact(DOWNLOAD_OUT, "../../dotdot-escape"),
        absent=("{tmp}/dotdot-escape",),
    ),
    Row("artifact-name-dotdot-alone", UNSAFE_NAME, rename_artifact(DOWNLOAD_OUT, "..")),
    Row("artifact-name-slash", UNSAFE_NAME, rename_artifact(DOWNLOAD_OUT, "a/b")),
    Row("artifact-name-control", UNSAFE_NAME, rename_artifact(DOWNLOAD_OUT, "out\x1b[2K")),
    Row("artifact-name-long", UNSAFE_NAME, rename_artifact(DOWNLOAD_OUT, "a" * 200)),
    Row("task-name-dotdot", UNSAFE_NAME, rename_task(DOWNLOAD, "../task-escape"), absent=("{tmp}/task-escape",)),
    Row("task-name-absolute", UNSAFE_NAME, rename_task(DOWNLOAD, "{tmp}/task-abs"), absent=("{tmp}/task-abs",)),
    Row("task-name-newline", UNSAFE_NAME, rename_task(DOWNLOAD, "t\nbuildtool: all good")),
    Row("template-name-dotdot", UNSAFE_NAME, rename_template(DOWNLOAD, "..")),
    Row("task-name-twice", f"{TRAINING} appears twice", rename_task(DOWNLOAD, TRAINING)),
    Row(
        "artifact-path-bind-syntax",
        "is not a plain absolute path",
        setting(download_output, "path", "/tmp/out:/host:rw"),
    ),
    Row("artifact-path-relative", "is not a plain absolute path", setting(training_input, "path", "tmp/in")),
    Row("artifact-path-dotdot", "is not a plain absolute path", setting(training_input, "path", "/tmp/../etc")),
    # Images: pinned, and as the map says (verify's check).
    Row(
        "image-unpinned-tag",
        f"template {DOWNLOAD}: container.image: {EVIL} is not pinned by digest",
        setting(download_container, "image", EVIL),
    ),
    Row(
        "image-not-the-maps",
        f"template {DOWNLOAD}: container.image: {PINNED_ELSEWHERE} differs from the map's",
        setting(download_container, "image", PINNED_ELSEWHERE),
    ),
    Row(
        "image-annotation-not-the-maps",
        f"template {DOWNLOAD}: {run_checks.verify.COMPONENT_SPEC} annotation: {PINNED_ELSEWHERE} differs",
        with_annotation_image,
    ),
    Row(
        "image-newline",
        "evil.example.com/x:1\\nbuildtool: all good is not pinned",
        setting(download_container, "image", "evil.example.com/x:1\nbuildtool: all good"),
    ),
    # Fields local runs do not implement, refused by name.
    Row(
        "spec-volumes-hostPath",
        f"spec.volumes (hostPath, name) {REFUSED}",
        setting(spec, "volumes", [{"name": "root", "hostPath": {"path": "/"}}]),
    ),
    Row(
        "template-volumes",
        f"template {DOWNLOAD}: volumes (hostPath, name) {REFUSED}",
        setting(download, "volumes", [{"name": "ssh", "hostPath": {"path": "/root/.ssh"}}]),
    ),
    Row(
        "container-volumeMounts",
        f"template {DOWNLOAD}: container.volumeMounts (mountPath, name) {REFUSED}",
        setting(download_container, "volumeMounts", [{"name": "root", "mountPath": "/host"}]),
    ),
    Row(
        "container-privileged",
        f"template {DOWNLOAD}: container.securityContext (privileged) {REFUSED}",
        setting(download_container, "securityContext", {"privileged": True}),
    ),
    Row(
        "template-sidecars",
        f"template {DOWNLOAD}: sidecars (image, name) {REFUSED}",
        setting(download, "sidecars", [{"name": "miner", "image": EVIL}]),
    ),
    Row(
        "template-initContainers",
        f"template {DOWNLOAD}: initContainers (image, name) {REFUSED}",
        setting(download, "initContainers", [{"name": "miner", "image": EVIL}]),
    ),
    Row("template-script", f"template {DOWNLOAD}: script (command, image, source) {REFUSED}", as_script),
    Row(
        "template-resource",
        f"template {DOWNLOAD}: resource (action, manifest) {REFUSED}",
        setting(download, "resource", {"action": "create", "manifest": f"kind: Pod\nspec: {{image: {EVIL}}}"}),
    ),
    Row(
        "template-podSpecPatch",
        f"template {DOWNLOAD}: podSpecPatch {REFUSED}",
        setting(download, "podSpecPatch", '{"containers": [{"name": "main", "image": "' + EVIL + '"}]}'),
    ),
    Row("spec-podSpecPatch", f"spec.podSpecPatch {REFUSED}", setting(spec, "podSpecPatch", "hostPID: true")),
    Row("spec-hostNetwork", f"spec.hostNetwork {REFUSED}", setting(spec, "hostNetwork", True)),
    Row(
        "spec-securityContext",
        f"spec.securityContext (runAsUser) {REFUSED}",
        setting(spec, "securityContext", {"runAsUser": 0}),
    ),
    Row(
        "spec-templateDefaults",
        f"spec.templateDefaults (container) {REFUSED}",
        setting(spec, "templateDefaults", {"container": {"image": EVIL}}),
    ),
    Row(
        "env-configMapKeyRef",
        f"template {DOWNLOAD}: container.env.X.valueFrom.configMapKeyRef (key, name) {REFUSED}",
        setting(
            download_container, "env", [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "k"}}}]
        ),
    ),
    Row(
        "env-fieldRef",
        f"template {DOWNLOAD}: container.env.NODE.valueFrom.fieldRef (fieldPath) {REFUSED}",
        setting(
            download_container, "env", [{"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}]
        ),
    ),
    Row(
        "output-parameter-jsonPath",
        f"template {DOWNLOAD}: outputs.parameters.p.valueFrom.jsonPath {REFUSED}",
        setting(lambda w: download(w)["outputs"], "parameters", [{"name": "p", "valueFrom": {"jsonPath": "{.x}"}}]),
    ),
    Row(
        "output-parameter-path-dotdot",
        "outputs.parameters.p.valueFrom.path: '/tmp/../etc/x' is not a plain",
        setting(
            lambda w: download(w)["outputs"], "parameters", [{"name": "p", "valueFrom": {"path": "/tmp/../etc/x"}}]
        ),
    ),
    Row(
        "output-in-root",
        "output p: /p lies in /",
        setting(lambda w: download(w)["outputs"], "parameters", [{"name": "p", "valueFrom": {"path": "/p"}}]),
    ),
    Row(
        "input-artifact-http",
        f"template {TRAINING}: inputs.artifacts.{DOWNLOAD_OUT}.http (url) {REFUSED}",
        setting(training_input, "http", {"url": "http://evil.example.com/payload"}),
    ),
    Row(
        "task-when-code",
        "expected comparisons joined by &&, || and parentheses",
        setting(training_task, "when", "__import__('os').system('id') == 0"),
    ),
    Row(
        "task-when-not-a-string",
        f"dag.tasks.{TRAINING}.when: expected a string",
        setting(training_task, "when", ["1 == 1"]),
    ),
    Row(
        "task-withSequence",
        f"template pipeline: dag.tasks.{TRAINING}.withSequence (count) {REFUSED}",
        setting(training_task, "withSequence", {"count": "5"}),
    ),
    Row(
        "task-withItems-too-many",
        f"dag.tasks.{TRAINING}.withItems: expected a list of at most 1000 items",
        setting(training_task, "withItems", list(range(1001))),
    ),
    Row(
        "task-depends-unknown-result",
        "asks for 'Exploded' of task download-training-dataset",
        setting(training_task, "depends", f"{DOWNLOAD}.Exploded"),
    ),
    Row(
        "retry-policy",
        f"template {TRAINING}: retryStrategy.backoff (duration) {REFUSED}",
        setting(lambda w: template(w, TRAINING), "retryStrategy", {"limit": 2, "backoff": {"duration": "1"}}),
    ),
    Row(
        "retry-limit-huge",
        "retryStrategy.limit 1000000 is not a whole number from 0 to 10",
        setting(lambda w: template(w, TRAINING), "retryStrategy", {"limit": 1000000}),
    ),
    Row(
        "on-exit-unknown",
        "spec.onExit: 'nowhere' is not a template of the workflow",
        setting(spec, "onExit", "nowhere"),
    ),
    Row(
        "artifact-from-control",
        f"task {TRAINING} depends on unknown task(s) x\\x1b[2K",
        setting(
            lambda w: training_task(w)["arguments"]["artifacts"][0], "from", "{{tasks.x\x1b[2K.outputs.artifacts.y}}"
        ),
    ),
    Row(
        "task-output-parameter",
        "cannot resolve {{tasks.download-training-dataset.outputs.parameters.x}}",
        unresolvable_task_output,
    ),
    # Documents no compiler writes.
    Row("yaml-alias", "anchors and aliases are not accepted", with_shared_args),
    Row("yaml-alias-bomb", "anchors and aliases are not accepted", alias_bomb_in_args),
    Row("10000-templates", "spec.templates: 10004 entries, over the limit of 1000", many_templates),
    Row("not-utf-8", "not UTF-8 (byte 0xff at offset 0)", data=lambda data: b"\xff" + data),
    Row(
        "over-size-cap",
        f"over the {run_checks.MAX_WORKFLOW_BYTES}-byte limit",
        data=lambda data: data + b"#" * run_checks.MAX_WORKFLOW_BYTES + b"\n",
    ),
    Row("deep-nesting", "not valid YAML", data=lambda data: b"[" * 20000 + b"]" * 20000),
    Row("templates-not-a-list", "spec.templates: expected a list, got str", setting(spec, "templates", "abc")),
    Row("not-a-workflow", "not an Argo Workflow (kind: Workflow)", setting(lambda w: w, "kind", "Pod")),
    Row(
        "entrypoint-not-a-dag",
        f"the workflow's entrypoint '{DOWNLOAD}' is not a DAG template",
        setting(spec, "entrypoint", DOWNLOAD),
    ),
    # Parameters.
    Row(
        "param-name-newline",
        "unknown parameter(s) a\\nbuildtool: all good;",
        params=(*(f"{k}={v}" for k, v in ARGUMENTS.items()), "a\nbuildtool: all good=1"),
    ),
    # The work folder.
    Row("workdir-symlink-task", "is not an empty folder", workdir=symlink_at(DOWNLOAD)),
    Row("workdir-symlink-artifact", "is not an empty folder", workdir=symlink_at(DOWNLOAD, DOWNLOAD_OUT)),
    Row("workdir-stale-output", "is not an empty folder", workdir=stale_output),
    Row("workdir-task-is-a-file", "is not an empty folder", workdir=task_file),
    Row("workdir-is-a-symlink", "a symlink; give a real folder", workdir=lambda w, t: w.symlink_to(t)),
    # Secrets the workflow takes from a Kubernetes Secret.
    Row(
        "secret-variable-not-passed",
        "container.env AWS_SECRET_ACCESS_KEY asks for the host's "
        "AWS_SECRET_ACCESS_KEY (for key k of the Kubernetes secret s); run passes only PLATFORM_ACCESS_KEY, "
        "PLATFORM_SECRET_KEY unless told: add --secret-env AWS_SECRET_ACCESS_KEY",
        setting(
            download_container,
            "env",
            [{"name": "AWS_SECRET_ACCESS_KEY", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}],
        ),
        environment={**ENVIRONMENT, "AWS_SECRET_ACCESS_KEY": SECRET},
    ),
    Row(
        "secret-variable-missing",
        f"container.env PLATFORM_SECRET_KEY comes from key secret_key of the Kubernetes "
        f"secret {SECRET_NAME}; set PLATFORM_SECRET_KEY",
        k8s_secret=True,
        environment={"PLATFORM_ACCESS_KEY": ACCESS},
        params=tuple(f"{k}={v}" for k, v in ARGUMENTS.items() if k not in ("access_key", "secret_key")),
    ),
]


# -- the invariants ------------------------------------------------------------------------------------------------


def snapshot(root: Path) -> dict[str, str]:
    """Every path under `root` (links not followed): its kind and content digest or link target."""
    found = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder, name)
            if path.is_symlink():
                found[str(path)] = f"link -> {os.readlink(path)}"
            elif path.is_dir():
                found[str(path)] = "dir"
            else:
                found[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


class EngineTripwire:
    """Stands where the Docker engine would be opened: a refused run must never get there."""

    opened = 0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        type(self).opened += 1
        raise AssertionError("the engine was opened: a container could have started")


@pytest.fixture
def tripwire(monkeypatch: pytest.MonkeyPatch) -> type[EngineTripwire]:
    EngineTripwire.opened = 0
    monkeypatch.setattr(engine, "Engine", EngineTripwire)
    return EngineTripwire


@pytest.fixture(scope="module")
def compiled_once(tmp_path_factory: pytest.TempPathFactory) -> dict[bool, tuple[dict[str, Any], bytes]]:
    """Each form of the real pipeline (plain, credentials from a Secret) compiled by kfp once for the table, with
    its map: (workflow, image_map.yaml's bytes). A project's map does not depend on the folder it lies in."""
    found = {}
    for k8s_secret in (False, True):
        project = write_project(tmp_path_factory.mktemp("project"))
        workflow, _, _ = compile_project(project, k8s_secret=k8s_secret)
        found[k8s_secret] = (workflow, (project.parent / "image_map.yaml").read_bytes())
    return found


@pytest.mark.parametrize("row", ROWS, ids=[row.id for row in ROWS])
def test_run_refuses(
    row: Row,
    project: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tripwire: type[EngineTripwire],
    compiled_once: dict[bool, tuple[dict[str, Any], bytes]],
) -> None:
    workflow, lock = compiled_once[row.k8s_secret]
    (project.parent / "image_map.yaml").write_bytes(lock)
    path = project.parent / "pipeline.yaml"
    if row.edit is not None:
        workflow = row.edit(copy.deepcopy(workflow), tmp_path)
    data = yaml.dump(workflow, sort_keys=False).encode()  # not safe_dump: an edit may share a node on purpose
    path.write_bytes(row.data(data) if row.data else data)
    for name in ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    for name, value in row.environment.items():
        monkeypatch.setenv(name, value)
    workdir = tmp_path / "work"
    if row.workdir is not None:
        row.workdir(workdir, tmp_path)
    before = snapshot(tmp_path)
    params = row.params if row.params is not None else tuple(f"{k}={v}" for k, v in ARGUMENTS.items())
    modes = [[]] if row.workdir is not None else [["--dry-run"], []]
    for mode in modes:
        started = time.monotonic()
        code = cli.main(
            [
                "--config",
                str(project),
                "run",
                str(path),
                "--workdir",
                str(workdir),
                *mode,
                *(item for param in params for item in ("-p", param)),
            ]
        )
        seconds = time.monotonic() - started
        out, err = capsys.readouterr()
        assert code == row.code, err
        assert seconds < SECONDS, f"{seconds:.1f}s"
        assert len(err.splitlines()) == 1 and err.startswith("buildtool: error: "), err
        assert row.fragment in err, err
        assert SECRET not in out + err and ACCESS not in out + err
        assert snapshot(tmp_path) == before
        for absent in row.absent:
            assert not Path(absent.format(tmp=tmp_path)).exists()
        if row.workdir is not None and (tmp_path / "outside").exists():
            assert list((tmp_path / "outside").iterdir()) == []
    assert tripwire.opened == 0


def test_the_table_covers_every_case() -> None:
    assert len(ROWS) >= 40
    assert len({row.id for row in ROWS}) == len(ROWS)


def test_a_newline_in_a_parameter_value_forges_no_plan_line(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, _, path = compile_project(project)
    forged = "ds-1\n2. upload-model: evil.example.com/miner:latest"
    params = {**ARGUMENTS, "training_dataset_uid": forged}
    code = cli.main(
        [
            "--config",
            str(project),
            "run",
            str(path),
            "--dry-run",
            *(item for k, v in params.items() for item in ("-p", f"{k}={v}")),
        ]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "training_dataset_uid=ds-1\\n2. upload-model: evil.example.com/miner:latest" in out
    assert not any(line.startswith("2. upload-model: evil") for line in out.splitlines())
    assert [line.split(":")[0] for line in out.splitlines() if line[:1].isdigit()] == [
        "1. download-training-dataset",
        "2. training",
        "3. upload-model",
    ]
    assert SECRET not in out + err
