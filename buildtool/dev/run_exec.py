"""Execute a `RunPlan` on the local engine as Argo runs a kfp v1 workflow.

Each DAG runs its tasks as soon as the tasks they need have finished (`dependencies`, `depends`, or the
outputs their arguments read); independent tasks run at once, at most `jobs` containers at a time. A task
whose `when` does not hold is skipped; a task after a failed one is not started (Argo's failFast), nor
is any new task of that DAG. Loops (`withItems`, `withParam`) run one node per item, `name(0)`,
`name(1)`, ... A step whose container fails is tried again up to its `retryStrategy.limit`, and killed at
its `activeDeadlineSeconds`. The `onExit` template runs after the DAG, whether it succeeded or failed,
with `{{workflow.status}}` set.

Files: a step's outputs are written under `workdir/<node path>/<output>/`, that folder mounted at the
folder around the template's output `path`, so the step writes the file (or folder) itself at `path`,
as kfp 1.8's components expect. An output parameter is that file's text, read after the step (a regular
file of at most MAX_PARAMETER_BYTES of UTF-8, else the step fails). An input artifact is the producer's
file or folder, mounted read-only at the consumer's `path`.
"""

from __future__ import annotations

import os
import posixpath
import stat
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import EngineError, Interrupted, RunError
from ..util.progress import Events
from . import local_run
from .local_run import RUN_LABEL, RunPlan, Scope, StepRun
from .run_checks import escape
from .run_expr import depends_holds, when_holds

if TYPE_CHECKING:
    from ..engine import Engine
    from ..interrupt import Token

__all__ = ["MAX_PARAMETER_BYTES", "NodeResult", "RunOutcome", "check_workdir", "execute_run", "summary"]

MAX_PARAMETER_BYTES = 256 * 1024  # Argo keeps a parameter in the node's status; kfp's values are far smaller
TAIL_LINES = 25
MAX_NODES = 2000


def _no_events(_: str, __: str) -> None:
    pass


@dataclass
class NodeResult:
    """A task (container step, DAG, or loop) as it ended: succeeded, failed, skipped, or omitted (not started)."""

    node: str
    state: str
    seconds: float = 0.0
    #: Output name -> the file or folder the step wrote.
    outputs: dict[str, Path] = field(default_factory=dict)
    parameters: dict[str, str] = field(default_factory=dict)
    #: Why it failed or was skipped.
    reason: str = ""
    #: A step's output (its last try's), secrets masked.
    output: str = ""


@dataclass(frozen=True)
class RunOutcome:
    nodes: list[NodeResult]
    #: The first failure's message; None when the run succeeded.
    failure: str | None
    workdir: Path


def check_workdir(workdir: Path) -> Path:
    """The resolved work folder: absent or empty (so that nothing left from an earlier run passes for an
    output), with no character the engine's mount syntax cannot carry."""
    root = Path(workdir).resolve()
    if any(c in str(root) for c in ":,") or not str(root).isprintable():
        raise RunError(
            f"--workdir {escape(root)}: holds ':', ',' or a control character, which the engine's "
            "mount syntax cannot carry; choose another folder"
        )
    if Path(workdir).is_symlink():
        raise RunError(f"--workdir {escape(workdir)}: a symlink; give a real folder")
    if root.exists() and not root.is_dir():
        raise RunError(f"--workdir {escape(root)}: not a folder")
    if root.is_dir() and any(root.iterdir()):
        raise RunError(f"--workdir {escape(root)} is not an empty folder; run in an empty work folder")
    return root


def _make_folder(root: Path, *names: str) -> Path:
    """root/names..., created one level at a time, refusing symlinks; it must resolve inside `root`."""
    path = root
    for name in names:
        path = path / name
        if path.is_symlink():
            raise RunError(f"{escape(path)}: a symlink in the work folder; run in an empty work folder")
        try:
            path.mkdir(exist_ok=True)
        except OSError as exc:
            raise RunError(
                f"{escape(path)}: cannot create the folder ({exc.strerror}); run in an empty work folder"
            ) from None
    resolved = path.resolve()
    if not resolved.is_relative_to(root) or resolved == root:
        raise RunError(f"{escape(path)} resolves to {escape(resolved)}, outside the work folder {escape(root)}")
    return resolved


def _produced(path: Path, what: str) -> os.stat_result:
    """The file or folder a step wrote at `path`: it must exist and be one (a link or a device is refused: it
    would be followed on the host when mounted into the next step)."""
    try:
        info = path.lstat()
    except OSError:
        raise RunError(f"{what}: the step wrote nothing at {escape(path.name)}") from None
    if not (stat.S_ISREG(info.st_mode) or stat.S_ISDIR(info.st_mode)):
        raise RunError(f"{what}: the step left something other than a file or a folder there")
    return info


def _read_parameter(path: Path, what: str) -> str:
    info = _produced(path, what)
    if not stat.S_ISREG(info.st_mode):
        raise RunError(f"{what}: a folder, not a file holding the value")
    if info.st_size > MAX_PARAMETER_BYTES:
        raise RunError(
            f"{what}: {info.st_size} bytes, over the {MAX_PARAMETER_BYTES}-byte limit for a parameter; "
            "pass large values as artifacts"
        )
    descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(descriptor, "rb") as handle:
        data = handle.read(MAX_PARAMETER_BYTES + 1)
    try:
        return data[:MAX_PARAMETER_BYTES].decode()
    except UnicodeDecodeError:
        raise RunError(f"{what}: not UTF-8 text") from None


class _Executor:
    def __init__(
        self,
        plan: RunPlan,
        engine: Engine,
        root: Path,
        events: Events,
        jobs: int,
        network_mode: str,
        token: Token | None,
    ) -> None:
        self.plan, self.engine, self.root, self.events = plan, engine, root, events
        self.network_mode, self.token = network_mode, token
        self.slots = threading.BoundedSemaphore(max(1, jobs))
        self.lock = threading.Lock()
        self.nodes: list[NodeResult] = []
        self.failure: str | None = None
        self.threads: list[threading.Thread] = []

    # -- bookkeeping --

    def record(self, result: NodeResult) -> NodeResult:
        with self.lock:
            if len(self.nodes) >= MAX_NODES:
                raise RunError(f"the run reached {MAX_NODES} nodes; loops this large are not run locally")
            self.nodes.append(result)
            if result.state == "failed" and self.failure is None and result.reason:
                self.failure = result.reason
        return result

    def check_cancel(self) -> None:
        if self.token is not None:
            self.token.raise_if_cancelled()

    # -- DAGs --

    def execute_dag(
        self,
        name: str,
        prefix: str,
        parameters: Mapping[str, str],
        artifacts: Mapping[str, str],
        status: str = "Running",
    ) -> tuple[str, dict[str, str], dict[str, str]]:
        """Run DAG template `name`; return its state and its output parameters and artifacts (host paths)."""
        template = self.plan.templates[name]
        where = f"template {name}"
        tasks = local_run.dag_order(template["dag"].get("tasks") or [], where)
        inputs = local_run.template_inputs(template, parameters, where)
        values = {
            **local_run.workflow_scope(self.plan, status),
            **{f"inputs.parameters.{k}": v for k, v in inputs.items()},
        }
        files = {f"inputs.artifacts.{k}": v for k, v in artifacts.items()}
        needs = {t["name"]: local_run.task_needs(t, f"{where}: task {t['name']}") for t in tasks}
        states: dict[str, str] = {}
        running: dict[str, threading.Thread] = {}
        finished = threading.Condition()
        outcomes: dict[str, NodeResult] = {}

        def work(task: Mapping[str, Any], scope: Scope) -> None:
            try:
                result = self.execute_task(task, prefix + task["name"], scope, status)
            except Interrupted:
                result = NodeResult(prefix + task["name"], "failed", reason="interrupted")
            except Exception as exc:  # the DAG waits for every task: a thread must always report
                result = self.record(
                    NodeResult(
                        prefix + task["name"], "failed", reason=self.plan.mask(_naming(prefix + task["name"], exc))
                    )
                )
            with finished:
                outcomes[task["name"]] = result
                finished.notify_all()

        while len(states) < len(tasks):
            self.check_cancel()
            with finished:
                for task_name, result in list(outcomes.items()):
                    states[task_name] = result.state
                    running.pop(task_name, None)
                    for key, value in result.parameters.items():
                        values[f"tasks.{task_name}.outputs.parameters.{key}"] = value
                    for key, path in result.outputs.items():
                        files[f"tasks.{task_name}.outputs.artifacts.{key}"] = str(path)
                    del outcomes[task_name]
            failed = any(state == "failed" for state in states.values())
            for task in tasks:
                task_name = task["name"]
                if task_name in states or task_name in running or not needs[task_name] <= set(states):
                    continue
                node = prefix + task_name
                if failed and task.get("depends") is None:  # a `depends` may name the failure it handles
                    states[task_name] = self.record(NodeResult(node, "omitted", reason="an earlier task failed")).state
                    continue
                scope = Scope(dict(values), dict(files))
                try:
                    blocked = self.blocked(task, states, node)
                    skip = (
                        not blocked
                        and "when" in task
                        and not when_holds(str(task["when"]), scope.values, f"task {node}: when")
                    )
                except RunError as exc:  # a value the expression cannot compare fails this task, not the run
                    states[task_name] = self.record(NodeResult(node, "failed", reason=self.plan.mask(str(exc)))).state
                    continue
                if blocked:
                    states[task_name] = self.record(NodeResult(node, "omitted", reason=blocked)).state
                    continue
                if skip:
                    self.events(node, f"skipped: when {escape(self.plan.mask(str(task['when'])))} does not hold")
                    states[task_name] = self.record(
                        NodeResult(node, "skipped", reason=f"when {self.plan.mask(str(task['when']))} does not hold")
                    ).state
                    continue
                thread = threading.Thread(target=work, args=(task, scope), daemon=True, name=node)
                running[task_name] = thread
                self.threads.append(thread)
                thread.start()
            if len(states) < len(tasks):
                with finished:
                    if not outcomes:
                        finished.wait(0.2)
        state = "failed" if any(s == "failed" for s in states.values()) else "succeeded"
        out_parameters, out_artifacts = self.dag_outputs(template, Scope(values, files), state, where)
        return state, out_parameters, out_artifacts

    def blocked(self, task: Mapping[str, Any], states: Mapping[str, str], node: str) -> str:
        """Why `task` cannot start although the tasks it needs have finished ('' when it can)."""
        if task.get("depends") is not None:
            holds = depends_holds(str(task["depends"]), states, f"task {node}: depends")
            return "" if holds else f"depends {task['depends']} does not hold"
        bad = sorted(
            n for n in local_run.task_needs(task, f"task {node}") if states.get(n) not in ("succeeded", "skipped")
        )
        return f"needs {', '.join(bad)}, which did not succeed" if bad else ""

    def dag_outputs(
        self, template: Mapping[str, Any], scope: Scope, state: str, where: str
    ) -> tuple[dict[str, str], dict[str, str]]:
        if state != "succeeded":
            return {}, {}
        outputs = template.get("outputs") or {}
        parameters = {
            p["name"]: local_run.substitute(
                str((p.get("valueFrom") or {}).get("parameter", "")),
                scope.values,
                f"{where}: outputs.parameters.{p['name']}",
            )
            for p in outputs.get("parameters") or []
        }
        artifacts = {}
        for artifact in outputs.get("artifacts") or []:
            key = str(artifact.get("from", "")).strip("{} ")
            if key not in scope.artifacts:
                raise RunError(
                    f"{where}: outputs.artifacts.{artifact['name']} comes from {escape(key)}, which produced nothing"
                )
            artifacts[artifact["name"]] = scope.artifacts[key]
        return parameters, artifacts

    # -- tasks --

    def execute_task(self, task: Mapping[str, Any], node: str, scope: Scope, status: str) -> NodeResult:
        """One task: a single node, or one per loop item (run at once, bounded by the job slots)."""
        where = f"task {node}"
        items = local_run.loop_items(task, scope.values, where)
        if items is None:
            return self.execute_node(task, node, scope, status)
        started = time.monotonic()
        self.events(node, f"loop over {len(items)} item(s)")
        results: list[NodeResult] = []

        def one(index: int, item: Any) -> None:
            child = f"{node}({index})"
            try:
                result = self.execute_node(
                    task, child, Scope({**scope.values, **local_run.item_values(item)}, scope.artifacts), status
                )
            except Interrupted:
                result = NodeResult(child, "failed", reason="interrupted")
            except Exception as exc:  # the loop waits for every item: a thread must always report
                result = self.record(NodeResult(child, "failed", reason=self.plan.mask(_naming(child, exc))))
            with self.lock:
                results.append(result)

        threads = [
            threading.Thread(target=one, args=pair, daemon=True, name=f"{node}({pair[0]})") for pair in enumerate(items)
        ]
        self.threads.extend(threads)
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        failed = [r for r in results if r.state == "failed"]
        state = "failed" if failed else "succeeded"
        # Argo gathers no single output for a loop: a later reference to one fails to resolve, by name.
        return self.record(
            NodeResult(node, state, time.monotonic() - started, reason=failed[0].reason if failed else "")
        )

    def execute_node(self, task: Mapping[str, Any], node: str, scope: Scope, status: str) -> NodeResult:
        where = f"task {node}"
        self.check_cancel()
        template = self.plan.templates[task["template"]]
        parameters, artifacts = local_run.task_arguments(task, scope, where)
        if "container" in template:
            return self.execute_step(local_run.resolve_step(self.plan, template, node, parameters, artifacts, status))
        started = time.monotonic()
        state, out_parameters, out_artifacts = self.execute_dag(
            task["template"], node + "/", parameters, artifacts, status
        )
        first = next((n.reason for n in self.nodes if n.state == "failed" and n.node.startswith(node + "/")), "")
        return self.record(
            NodeResult(
                node,
                state,
                time.monotonic() - started,
                {k: Path(v) for k, v in out_artifacts.items()},
                out_parameters,
                first,
            )
        )

    # -- steps --

    def execute_step(self, step: StepRun) -> NodeResult:
        from ..engine import Bind

        binds = []
        for read in step.inputs:
            source = Path(read.source)
            _produced(source, f"task {step.task}: input artifact {read.name} ({escape(read.source)})")
            binds.append(Bind(str(source), read.path, read_only=True))
        folders: dict[str, Path] = {}  # the folder around an output's path -> its host folder
        host: dict[str, Path] = {}
        used: set[str] = set()
        for written in step.outputs:
            parent = posixpath.dirname(written.path)
            if parent not in folders:
                label = written.name if written.name not in used else f"{written.name}-{len(used)}"
                used.add(label)
                folders[parent] = _make_folder(self.root, *step.task.split("/"), label)
                binds.append(Bind(str(folders[parent]), parent))
            host[written.name + ("\0p" if written.parameter else "")] = folders[parent] / posixpath.basename(
                written.path
            )
        started = time.monotonic()
        with self.slots:
            self.check_cancel()
            self.events(step.task, f"start in {step.image}")
            self.events(step.task, f"parameters: {step.shown_parameters()}")
            if step.env:
                self.events(step.task, f"env: {step.shown_env()}")
            for attempt in range(step.retries + 1):
                try:
                    result = self.engine.call(
                        step.image,
                        step.argv,
                        network_mode=self.network_mode,
                        binds=binds,
                        environment=step.environment,
                        labels={RUN_LABEL: str(self.root)},
                        token=self.token,
                        deadline=step.deadline,
                    )
                except EngineError as exc:  # the engine quotes argv[0] when it cannot start it: masked
                    raise RunError(step.mask(str(exc))) from None
                output = step.mask(result.output)
                for line in output.splitlines():
                    self.events(step.task, f"| {escape(line)}")
                if result.exit_code == 0 and not result.timed_out:
                    break
                if attempt < step.retries:
                    self.events(
                        step.task, f"failed (exit code {result.exit_code}); retry {attempt + 1} of {step.retries}"
                    )
        seconds = time.monotonic() - started
        if result.timed_out or result.exit_code != 0:
            tail = "\n".join(escape(line) for line in output.rstrip().splitlines()[-TAIL_LINES:])
            why = (
                f"ran past its activeDeadlineSeconds ({step.deadline:.0f}s) and was killed"
                if result.timed_out
                else f"failed with exit code {result.exit_code} after {seconds:.0f}s"
            )
            tries = f" ({step.retries + 1} tries)" if step.retries else ""
            return self.record(
                NodeResult(
                    step.task,
                    "failed",
                    seconds,
                    output=output,
                    reason=(
                        f"step {step.task} {why}{tries} (image {step.image}); the last lines of its output:\n{tail}"
                    ),
                )
            )
        outputs, parameters = {}, {}
        for written in step.outputs:
            what = f"task {step.task}: output {'parameter' if written.parameter else 'artifact'} {written.name}"
            path = host[written.name + ("\0p" if written.parameter else "")]
            if written.parameter:
                parameters[written.name] = _read_parameter(path, what)
            else:
                _produced(path, what)
                outputs[written.name] = path
        self.events(step.task, f"done in {seconds:.1f}s" + "".join(f"; {n} in {p}" for n, p in outputs.items()))
        return self.record(NodeResult(step.task, "succeeded", seconds, outputs, parameters, output=output))


def _naming(node: str, error: Exception) -> str:
    """The error's message, naming the task unless it does already."""
    message = (
        str(error) if isinstance(error, (RunError, EngineError)) else f"unexpected {error.__class__.__name__}: {error}"
    )
    return message if f"task {node}" in message or f"step {node}" in message else f"task {node}: {message}"


def _pull_missing(plan: RunPlan, engine: Engine, events: Events) -> None:
    images = {str(t["container"].get("image")) for t in plan.templates.values() if "container" in t}
    for image in sorted(i for i in images if engine.image_id(i) is None):
        # As a kubelet would: a pinned image the engine lacks is pulled by its digest.
        events("run", f"pull {image}")
        try:
            engine.pull(image, progress=lambda message: events("run", message))
        except EngineError as exc:
            raise RunError(
                f"image {image} is neither in the local engine nor pullable: {exc}; "
                "build and push it with `buildtool build --push`"
            ) from None


def execute_run(
    plan: RunPlan,
    engine: Engine,
    workdir: Path,
    events: Events = _no_events,
    *,
    jobs: int = 4,
    network_mode: str = "none",
    token: Token | None = None,
    threads: list[threading.Thread] | None = None,
) -> RunOutcome:
    """Run `plan`; every node's result, and the first failure (None when all succeeded).

    `threads` (when given) collects the worker threads, so that a caller stopped by a signal can wait for
    them to remove their containers."""
    root = check_workdir(workdir)
    _pull_missing(plan, engine, events)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunError(f"--workdir {escape(root)}: cannot create the folder ({exc.strerror})") from None
    executor = _Executor(plan, engine, root, events, jobs, network_mode, token)
    if threads is not None:
        executor.threads = threads
    events("run", f"artifacts under {escape(root)}")
    state, _, _ = executor.execute_dag(plan.entrypoint, "", plan.values, {})
    if plan.on_exit is not None:
        status = "Succeeded" if state == "succeeded" else "Failed"
        events(plan.on_exit, f"exit handler (workflow status {status})")
        exit_task = {"name": plan.on_exit, "template": plan.on_exit}
        try:
            executor.execute_node(exit_task, plan.on_exit, Scope(local_run.workflow_scope(plan, status), {}), status)
        except (RunError, EngineError) as exc:
            executor.record(NodeResult(plan.on_exit, "failed", reason=plan.mask(f"exit handler: {exc}")))
    return RunOutcome(executor.nodes, executor.failure, root)


def summary(outcome: RunOutcome) -> list[str]:
    """One line per node: its path, state, time and where its outputs are."""
    lines = []
    width = max([len(n.node) for n in outcome.nodes] + [4])
    for result in sorted(outcome.nodes, key=lambda n: n.node):
        where = ", ".join(f"{name}: {escape(path)}" for name, path in sorted(result.outputs.items()))
        note = where or (result.reason if result.state in ("skipped", "omitted") else "")
        lines.append(f"{result.node:<{width}}  {result.state:<9} {result.seconds:6.1f}s  {note}".rstrip())
    return lines
