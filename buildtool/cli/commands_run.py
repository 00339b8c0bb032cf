"""`buildtool run`: a compiled pipeline run on the local engine, as Argo runs it on the cluster."""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import RunError
from .options import Subcommands, add_command, add_hidden_base_image, add_param_option, add_pipeline_argument
from .printer import Printer
from .project import load_config

if TYPE_CHECKING:
    from ..dev.run_network import Endpoint
    from ..dev.run_outcome import RunOutcome
    from ..dev.run_plan import RunPlan, StepRun

RUN_HELP = "run a compiled pipeline on the local engine, as Argo runs it on the cluster"
RUN_DESCRIPTION = """\
Run the compiled workflow's DAG on the local engine with Argo's semantics for what kfp 1.8 emits (output files
and parameters, conditions, loops, exit handlers, retries, deadlines); independent tasks at once (--jobs).
Steps get no network unless --allow-host forwards a host endpoint to them. Only digest-pinned images (equal to
the image map's, when there is one) and the fields local runs implement are accepted; anything else (volumes,
sidecars, securityContext...) is refused by name. access_key and secret_key may come from PLATFORM_ACCESS_KEY
and PLATFORM_SECRET_KEY instead of --param; a variable the workflow takes from a Kubernetes Secret comes from
the host's variable of the same name. Their values are shown as ***. See docs/run.md."""


def add_run(sub: Subcommands) -> None:
    command = add_command(sub, "run", cmd_run, RUN_HELP, RUN_DESCRIPTION)
    add_pipeline_argument(command)
    add_param_option(command, "a pipeline parameter (repeat for each); parameters with a default may be left out")
    command.add_argument("--workdir", help="empty folder for the steps' artifacts (default: a new temporary folder)")
    command.add_argument(
        "--secret-env",
        action="append",
        default=[],
        metavar="NAME",
        help="also pass the host's NAME to a container that takes it from a Kubernetes Secret "
        "(PLATFORM_ACCESS_KEY and PLATFORM_SECRET_KEY always are); repeatable",
    )
    command.add_argument(
        "--image-map",
        help="image map the images must match (default: [tool.buildtool] image_map, "
        "when the configuration and the map exist)",
    )
    command.add_argument("--dry-run", action="store_true", help="print the resolved steps; run nothing")
    command.add_argument("--jobs", "-j", type=int, default=4, help="containers run at once (default: %(default)s)")
    add_network_options(command)
    add_hidden_base_image(command)


def add_network_options(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="HOST:PORT",
        help="let the steps reach this endpoint of the host's loopback (e.g. the platform server at "
        "127.0.0.1:8080), at the same address; nothing else is reachable. Repeatable",
    )
    command.add_argument(
        "--host-network",
        action="store_true",
        help="give the steps the host's network instead: they then reach every service of the host, "
        "its loopback included (the registry on 127.0.0.1:5000, databases, metadata endpoints)",
    )


def cmd_run(args: argparse.Namespace) -> int:
    from ..dev import run_network, run_outcome, run_preview

    endpoints = [run_network.parse_endpoint(text) for text in args.allow_host]
    if args.host_network and endpoints:
        raise RunError(
            "--host-network and --allow-host exclude each other: with the host's network every "
            "endpoint is reachable already; keep --allow-host alone"
        )
    if args.jobs < 1:
        raise RunError(f"--jobs {args.jobs}: give at least 1")
    plan = checked_plan(args)
    steps = run_preview.preview(plan)
    for line in run_preview.describe(steps):
        print(line)
    print(run_network.describe(endpoints, args.host_network))
    if args.dry_run:
        return 0
    outcome, root = execute(args, plan, steps, endpoints)
    for line in run_outcome.summary(outcome):
        print(line)
    if outcome.failure is not None:
        raise RunError(outcome.failure)
    from ..dev.run_text import escape

    ran = sum(1 for node in outcome.nodes if node.state == "succeeded")
    print(f"the run succeeded ({ran} node(s)); outputs are in {escape(root)}")
    return 0


def checked_plan(args: argparse.Namespace) -> RunPlan:
    """The workflow read and planned, every image checked against the map (or for its pin, without one)."""
    from ..dev import run_checks, run_plan, run_text, run_workflow

    path = Path(args.pipeline) if args.pipeline else load_config(args).output
    workflow = run_checks.read_workflow(path)
    loaded, map_path = run_checks.image_map_for_run(
        Path(args.image_map) if args.image_map else None, Path(args.config), lambda: load_config(args)
    )
    external = load_config(args).external_images if loaded is not None and Path(args.config).is_file() else ()
    plan = run_workflow.plan_checked(
        workflow,
        args.param,
        os.environ,
        None if loaded is None else loaded.steps,
        run_plan.SECRET_VARIABLES | set(args.secret_env),
        external,
    )
    if map_path is None:
        print(
            "warning: no image map found; images were checked for digest pins only (--image-map gives one)",
            file=sys.stderr,
        )
    else:
        print(f"every image is pinned and matches {run_text.escape(map_path)}")
    return plan


def execute(
    args: argparse.Namespace, plan: RunPlan, steps: list[StepRun], endpoints: list[Endpoint]
) -> tuple[RunOutcome, Path]:
    """The plan executed on the engine in the workdir; on a signal, the step containers stopped first."""
    import tempfile

    from ..dev import run_exec, run_files, run_network, run_plan
    from ..dev.run_text import escape
    from ..engine import Engine
    from ..errors import Interrupted
    from ..interrupt import Token, on_signals

    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="buildtool-run-"))
    root = run_files.check_workdir(workdir)  # before the engine is even reached
    engine = Engine()
    threads: list[threading.Thread] = []
    labels = {run_plan.RUN_LABEL: str(root)}
    try:
        with on_signals(Token()) as token:
            try:
                forwarder = steps[0].image if steps else ""  # the forwarder runs in the first step's image
                with run_network.Isolation(engine, endpoints, args.host_network, forwarder, labels) as network:
                    outcome = run_exec.execute_run(
                        plan,
                        engine,
                        workdir,
                        Printer(),
                        jobs=args.jobs,
                        network_mode=network.network_mode,
                        token=token,
                        threads=threads,
                    )
            except Interrupted as exc:
                deadline = time.monotonic() + 5  # the workers remove the containers they were starting
                for thread in list(threads):
                    thread.join(max(0.0, deadline - time.monotonic()))
                raise Interrupted(
                    exc.signum,
                    f"the step containers were stopped and removed; the outputs so far are in {escape(root)}",
                ) from None
    finally:
        engine.close()
    return outcome, root
