"""Execute a `RunPlan` on the local engine as Argo runs a kfp v1 workflow.

Each DAG runs its tasks as soon as the tasks they need have finished (`dependencies`, `depends`, or the
outputs their arguments read); independent tasks run at once, at most `jobs` containers at a time. A task
whose `when` does not hold is skipped; a task after a failed one is not started (Argo's failFast), nor
is any new task of that DAG. Loops (`withItems`, `withParam`) run one node per item, `name(0)`,
`name(1)`, ... A step whose container fails is tried again up to its `retryStrategy.limit`, and killed at
its `activeDeadlineSeconds`. The `onExit` template runs after the DAG, whether it succeeded or failed,
with `{{workflow.status}}` set. Where the files go: `run_files`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import EngineError, Interrupted, RunError
from ..util.progress import Events
from .run_expr import depends_holds, when_holds
from .run_files import check_workdir, step_mounts, step_outputs
from .run_outcome import NodeResult, RunOutcome, naming, step_failure
from .run_plan import RUN_LABEL, RunPlan, Scope, StepRun
from .run_resolve import (
    dag_order,
    dag_outputs,
    item_values,
    loop_items,
    task_arguments,
    task_needs,
    template_inputs,
    workflow_scope,
)
from .run_step import resolve_step
from .run_text import escape

if TYPE_CHECKING:
    from ..engine import Bind, ContainerResult, Engine
    from ..interrupt import Token

__all__ = ["execute_run"]

MAX_NODES = 2000


def _no_events(_: str, __: str) -> None:
    pass


@dataclass
class _Dag:
    """One DAG being executed: what its tasks may refer to so far, and where each task stands."""

    prefix: str
    status: str
    tasks: list[Mapping[str, Any]]
    needs: dict[str, set[str]]
    #: Parameter variables (inputs, workflow, finished tasks' outputs) -> value.
    values: dict[str, str]
    #: Artifact variables -> host path.
    files: dict[str, str]
    #: Task name -> its final state, once it has one.
    states: dict[str, str] = field(default_factory=dict)
    running: set[str] = field(default_factory=set)
    #: Results the worker threads reported and `collect` has not read yet, guarded by `finished`.
    reported: dict[str, NodeResult] = field(default_factory=dict)
    finished: threading.Condition = field(default_factory=threading.Condition)

    def done(self) -> bool:
        return len(self.states) >= len(self.tasks)

    def failed(self) -> bool:
        return any(state == "failed" for state in self.states.values())

    def ready(self, task: Mapping[str, Any]) -> bool:
        """Not started yet, and every task it needs has finished."""
        name = task["name"]
        return name not in self.states and name not in self.running and self.needs[name] <= set(self.states)

    def scope(self) -> Scope:
        return Scope(dict(self.values), dict(self.files))

    def report(self, name: str, result: NodeResult) -> None:
        with self.finished:
            self.reported[name] = result
            self.finished.notify_all()

    def collect(self) -> None:
        """The reported results taken in: their states, and their outputs for the tasks that follow."""
        with self.finished:
            for name, result in self.reported.items():
                self.states[name] = result.state
                self.running.discard(name)
                for key, value in result.parameters.items():
                    self.values[f"tasks.{name}.outputs.parameters.{key}"] = value
                for key, path in result.outputs.items():
                    self.files[f"tasks.{name}.outputs.artifacts.{key}"] = str(path)
            self.reported.clear()

    def wait(self) -> None:
        """Until a task reports, or a moment passes (a signal is looked for between waits)."""
        with self.finished:
            if not self.reported:
                self.finished.wait(0.2)


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

    def guarded(self, node: str, call: Callable[[], NodeResult]) -> NodeResult:
        """`call`'s result, or `node` failed: a DAG or a loop waits for each of its threads, which must report."""
        try:
            return call()
        except Interrupted:
            return NodeResult(node, "failed", reason="interrupted")
        except Exception as exc:
            return self.record(NodeResult(node, "failed", reason=self.plan.mask(naming(node, exc))))

    def start_thread(self, name: str, work: Callable[..., None], *args: Any) -> threading.Thread:
        thread = threading.Thread(target=work, args=args, daemon=True, name=name)
        self.threads.append(thread)
        thread.start()
        return thread

    # -- DAGs --

    def execute_dag(
        self,
        name: str,
        prefix: str,
        parameters: Mapping[str, str],
        artifacts: Mapping[str, str],
        status: str = "Running",
    ) -> tuple[str, dict[str, str], dict[str, str]]:
        """Execute DAG template `name`; return its state and its output parameters and artifacts (host paths)."""
        template = self.plan.templates[name]
        where = f"template {name}"
        dag = self.open_dag(template, where, prefix, parameters, artifacts, status)
        while not dag.done():
            self.check_cancel()
            dag.collect()
            failed = dag.failed()  # as the pass begins: a task failing in this pass stops the next one
            for task in dag.tasks:
                if dag.ready(task):
                    self.settle_or_start(dag, task, failed)
            if not dag.done():
                dag.wait()
        if dag.failed():
            return "failed", {}, {}
        return "succeeded", *dag_outputs(template, Scope(dag.values, dag.files), where)

    def open_dag(
        self,
        template: Mapping[str, Any],
        where: str,
        prefix: str,
        parameters: Mapping[str, str],
        artifacts: Mapping[str, str],
        status: str,
    ) -> _Dag:
        """The DAG's tasks in order, what each needs, and the values its tasks may read before any has run."""
        tasks = dag_order(template["dag"].get("tasks") or [], where)
        inputs = template_inputs(template, parameters, where)
        values = {**workflow_scope(self.plan, status), **{f"inputs.parameters.{k}": v for k, v in inputs.items()}}
        files = {f"inputs.artifacts.{k}": v for k, v in artifacts.items()}
        needs = {t["name"]: task_needs(t, f"{where}: task {t['name']}") for t in tasks}
        return _Dag(prefix, status, tasks, needs, values, files)

    def settle_or_start(self, dag: _Dag, task: Mapping[str, Any], failed: bool) -> None:
        """Start `task` in a thread of its own, or give it its final state at once."""
        name = task["name"]
        node = dag.prefix + name
        scope = dag.scope()
        settled = self.settled(dag, task, node, scope, failed)
        if settled is not None:
            dag.states[name] = self.record(settled).state
            return
        dag.running.add(name)

        def work() -> None:
            dag.report(name, self.guarded(node, lambda: self.execute_task(task, node, scope, dag.status)))

        self.start_thread(node, work)

    def settled(self, dag: _Dag, task: Mapping[str, Any], node: str, scope: Scope, failed: bool) -> NodeResult | None:
        """The result of a task that does not start: omitted after a failure or when what it needs did not
        succeed, skipped when its `when` does not hold, failed when its condition cannot be read."""
        if failed and task.get("depends") is None:  # a `depends` may name the failure it handles
            return NodeResult(node, "omitted", reason="an earlier task failed")
        try:
            blocked = self.blocked(task, dag.states, node)
            skip = (
                not blocked and "when" in task and not when_holds(str(task["when"]), scope.values, f"task {node}: when")
            )
        except RunError as exc:  # a value the expression cannot compare fails this task, not the run
            return NodeResult(node, "failed", reason=self.plan.mask(str(exc)))
        if blocked:
            return NodeResult(node, "omitted", reason=blocked)
        if skip:
            self.events(node, f"skipped: when {escape(self.plan.mask(str(task['when'])))} does not hold")
            return NodeResult(node, "skipped", reason=f"when {self.plan.mask(str(task['when']))} does not hold")
        return None

    def blocked(self, task: Mapping[str, Any], states: Mapping[str, str], node: str) -> str:
        """Why `task` cannot start although the tasks it needs have finished ('' when it can)."""
        if task.get("depends") is not None:
            holds = depends_holds(str(task["depends"]), states, f"task {node}: depends")
            return "" if holds else f"depends {task['depends']} does not hold"
        bad = sorted(n for n in task_needs(task, f"task {node}") if states.get(n) not in ("succeeded", "skipped"))
        return f"needs {', '.join(bad)}, which did not succeed" if bad else ""

    # -- tasks --

    def execute_task(self, task: Mapping[str, Any], node: str, scope: Scope, status: str) -> NodeResult:
        """One task: a single node, or one per loop item (run at once, bounded by the job slots)."""
        items = loop_items(task, scope.values, f"task {node}")
        if items is None:
            return self.execute_node(task, node, scope, status)
        started = time.monotonic()
        self.events(node, f"loop over {len(items)} item(s)")
        results: list[NodeResult] = []

        def one(index: int, item: Any) -> None:
            child = f"{node}({index})"
            item_scope = Scope({**scope.values, **item_values(item)}, scope.artifacts)
            result = self.guarded(child, lambda: self.execute_node(task, child, item_scope, status))
            with self.lock:
                results.append(result)

        threads = [self.start_thread(f"{node}({index})", one, index, item) for index, item in enumerate(items)]
        for thread in threads:
            thread.join()
        failed = [r for r in results if r.state == "failed"]
        state = "failed" if failed else "succeeded"
        # Argo gathers no single output for a loop: a later reference to one fails to resolve, by name.
        return self.record(
            NodeResult(node, state, time.monotonic() - started, reason=failed[0].reason if failed else "")
        )

    def execute_node(self, task: Mapping[str, Any], node: str, scope: Scope, status: str) -> NodeResult:
        self.check_cancel()
        template = self.plan.templates[task["template"]]
        parameters, artifacts = task_arguments(task, scope, f"task {node}")
        if "container" in template:
            return self.execute_step(resolve_step(self.plan, template, node, parameters, artifacts, status))
        started = time.monotonic()
        state, out_parameters, out_artifacts = self.execute_dag(
            task["template"], node + "/", parameters, artifacts, status
        )
        first = next((n.reason for n in self.nodes if n.state == "failed" and n.node.startswith(node + "/")), "")
        outputs = {k: Path(v) for k, v in out_artifacts.items()}
        return self.record(NodeResult(node, state, time.monotonic() - started, outputs, out_parameters, first))

    # -- steps --

    def execute_step(self, step: StepRun) -> NodeResult:
        binds, host = step_mounts(self.root, step)
        started = time.monotonic()
        with self.slots:
            self.check_cancel()
            self.events(step.task, f"start in {step.image}")
            self.events(step.task, f"parameters: {step.shown_parameters()}")
            if step.env:
                self.events(step.task, f"env: {step.shown_env()}")
            result, output = self.tries(step, binds)
        seconds = time.monotonic() - started
        if result.timed_out or result.exit_code != 0:
            return self.record(step_failure(step, result, output, seconds))
        outputs, parameters = step_outputs(step, host)
        self.events(step.task, f"done in {seconds:.1f}s" + "".join(f"; {n} in {p}" for n, p in outputs.items()))
        return self.record(NodeResult(step.task, "succeeded", seconds, outputs, parameters, output=output))

    def tries(self, step: StepRun, binds: list[Bind]) -> tuple[ContainerResult, str]:
        """The step's container, started again after a failure up to its retry limit: the last try's result
        and its output, secrets masked (each try's output is reported as it ends)."""
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
                self.events(step.task, f"failed (exit code {result.exit_code}); retry {attempt + 1} of {step.retries}")
        return result, output


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
    """Execute `plan`; every node's result, and the first failure (None when all succeeded).

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
            executor.execute_node(exit_task, plan.on_exit, Scope(workflow_scope(plan, status), {}), status)
        except (RunError, EngineError) as exc:
            executor.record(NodeResult(plan.on_exit, "failed", reason=plan.mask(f"exit handler: {exc}")))
    return RunOutcome(executor.nodes, executor.failure, root)
