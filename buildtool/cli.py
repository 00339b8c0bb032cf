"""The `buildtool` command: parses arguments, renders progress, maps errors to exit codes.

Only this module prints or exits; everything it calls raises BuildtoolError subclasses.
Importing it loads no engine, HTTP, kfp or multipart library: each command imports
the modules that reach those inside its function, so `--help` and the offline
commands start fast and a missing optional piece breaks only the command using it.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from . import config as configuration
from . import dev as dev_defaults
from .errors import BuildtoolError, ConfigError, ImageMapError, PlatformError, RunError
from .lock import image_map

log = logging.getLogger("buildtool")

DESCRIPTION = """\
Build the pipeline's step images, push them, pin them by digest in image_map.yaml,
and compile the Kubeflow Pipelines (v1) pipeline against exactly those images.

Configuration: [tool.buildtool] in pyproject.toml. Environment: BUILDTOOL_REGISTRY,
BUILDTOOL_REPOSITORY and BUILDTOOL_BASE_IMAGE override the registry, the repository
prefix and the external base image; registry credentials come from the engine's
store (docker login), never from the configuration."""


class Printer:
    """Thread-safe progress lines on stderr, stamped with the time since start."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._start = time.monotonic()

    def __call__(self, image: str, message: str) -> None:
        with self._lock:
            print(f"[{time.monotonic() - self._start:6.1f}s] {image:<9} {message}", file=sys.stderr, flush=True)


def _config(args: argparse.Namespace) -> configuration.Config:
    return configuration.load(
        Path(args.config),
        registry=getattr(args, "registry", None) or os.environ.get("BUILDTOOL_REGISTRY"),
        repository=os.environ.get("BUILDTOOL_REPOSITORY"),
        base_image=getattr(args, "base_image", None) or os.environ.get("BUILDTOOL_BASE_IMAGE"),
    )


def _previous_map(config: configuration.Config) -> image_map.ImageMap | None:
    try:
        return image_map.load(config.image_map)
    except ImageMapError as exc:
        if config.image_map.exists():
            log.warning("ignoring the current map: %s", exc)
        return None


def cmd_build(args: argparse.Namespace) -> int:
    from .build import build_images
    from .build.prepare import prepare
    from .inputs import render
    from .inputs.plan import describe
    from .inputs.rerender import rerender_stale
    from .interrupt import Token, on_signals
    from .push.registry import Registry

    full = _config(args)
    selected = configuration.select(full, args.images)
    previous = _previous_map(full)
    if args.dry_run:  # writes nothing: an image is built from what its template renders, never a hand edit
        render.require_current(selected)
    for path in [] if args.dry_run else rerender_stale(selected, previous):  # a hand edit is refused
        shown = path.relative_to(full.root) if path.is_relative_to(full.root) else path
        print(
            f"rendered {shown} again (its template, variables or lock changed)" if path.exists() else f"removed {shown}"
        )
    registry = Registry()
    try:
        with on_signals(Token()) as token:
            prepared = prepare(selected, registry, previous)
            if full.repository_from:
                print(
                    f"repository {full.repository} (from {full.repository_from}; set [tool.buildtool] "
                    "repository to choose another)"
                )
            for line in describe(prepared.plan):
                print(line)
            if args.dry_run:
                return 0
            outcome = build_images(
                full,
                selected,
                prepared,
                registry,
                push=args.push,
                jobs=args.jobs,
                extra_tags=args.tag,
                events=Printer(),
                token=token,
                previous=previous,
                builder=args.builder,
            )
    finally:
        registry.close()
    if not args.push:
        print("built locally; pass --push to push and update the image map")
        return 0
    print(f"{full.image_map} {'updated' if outcome.map_changed else 'unchanged'}")
    for name, result in sorted(outcome.results.items()):
        print(f"{name:<9} {result.action:<5} {result.reference}  {outcome.sizes[name] / 1e6:.1f} MB compressed")
    return 0


def cmd_compile(args: argparse.Namespace) -> int:
    from .gate.compiler import compile_pipeline

    config = _config(args)
    output = Path(args.output) if args.output else config.output
    if args.check:
        from .gate import verify
        from .lock import freshness

        loaded = image_map.load(config.image_map)
        image_map.require_locked(loaded, config.steps, config.image_map, config.repositories)
        freshness.require_current(config, verify.load_workflow(output), loaded.steps, label=str(output), full=True)
        print(f"{output} is what compile makes now")
        return 0
    for note in compile_pipeline(config, output, allow_stale=args.allow_stale):
        print(f"warning: {note}", file=sys.stderr)
    print(f"wrote {output}")
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    from .inputs import render

    config = configuration.select(_config(args), args.images)
    changed = render.write(config)
    for path in changed:
        print(f"wrote {path.relative_to(config.root) if path.is_relative_to(config.root) else path}")
    templated = [i.name for i in config.images if i.template]
    print(
        f"{len(templated)} rendered image(s) ({', '.join(templated) or 'none'}): "
        f"{len(changed)} file(s) {'changed' if changed else 'already current'}"
    )
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from .inputs import render
    from .lock import staleness

    config = _config(args)
    render.require_current(config)  # before the map: a hand-edited Dockerfile is the first thing to fix
    loaded = image_map.load(config.image_map)
    image_map.require_locked(loaded, config.steps, config.image_map, config.repositories)
    staleness.require_fresh(config, loaded)
    print(f"{config.image_map} matches the working tree ({len(config.images)} images)")
    if config.output.exists():
        from .gate import verify
        from .lock import freshness

        freshness.require_current(config, verify.load_workflow(config.output), loaded.steps, label=str(config.output))
        print(f"{config.output} is what compile makes from them")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from .gate import verify

    config = _config(args)
    path = Path(args.pipeline) if args.pipeline else config.output
    if args.offline:
        verify.verify_pipeline(config, path, None)
    else:
        from .push.registry import Registry

        registry = Registry()
        try:
            verify.verify_pipeline(config, path, registry)
        finally:
            registry.close()
    print(
        f"{path}: every image is pinned, matches {config.image_map.name}"
        + ("" if args.offline else " and exists in the registry")
    )
    return 0


def cmd_submit(args: argparse.Namespace) -> int:
    from .gate import verify
    from .push.registry import Registry
    from .submit import execute
    from .submit import plan as submitting

    config = _config(args)
    path = Path(args.pipeline) if args.pipeline else config.output
    auth = execute.credentials(args.token_env, args.cookie_env, os.environ)
    host = execute.check_host(args.host or os.environ.get("KF_PIPELINES_ENDPOINT"), auth)
    ca_cert = Path(args.ca_cert) if args.ca_cert else None
    if ca_cert is not None and not ca_cert.is_file():
        raise ConfigError(f"--ca-cert {ca_cert}: not a file; give the PEM bundle of the cluster's CA")
    if args.wait and not args.run:
        raise ConfigError("--wait follows a run: add --run")
    if args.timeout <= 0 or args.poll <= 0:
        raise ConfigError("--timeout and --poll take a number of seconds above 0")
    data = verify.read_pipeline(path)  # read once: these bytes are checked, then uploaded
    registry = Registry()
    try:
        workflow = verify.verify_pipeline(config, path, registry, data=data)
    finally:
        registry.close()
    print(f"{path}: every image is pinned, matches {config.image_map.name} and exists in the registry")
    local = submitting.local(
        workflow,
        data,
        pipeline_name=args.pipeline_name,
        version_name=args.version_name,
        pairs=args.param,
        environment=os.environ,
        run=args.run,
    )
    if args.run and local.secrets_declared:
        print(
            f"warning: the pipeline takes {' and '.join(local.secrets_declared)} as run parameters, which KFP "
            'shows in the run\'s page and pod spec; compile with credentials = "k8s-secret:NAME" instead',
            file=sys.stderr,
        )
    from .submit.kfp_api import Cluster

    cluster = Cluster(host, auth, namespace=args.namespace, ca_cert=ca_cert)
    if args.run and cluster.namespace_in_use() is None and cluster.multi_user():
        raise ConfigError(
            f"{host} is a multi-user Kubeflow: experiments and runs belong to a profile's namespace; "
            "pass --namespace NS"
        )
    published = execute.publish(cluster, local, data, print)
    print(
        f"version {published.version.name}: {published.version.id} of pipeline {published.pipeline.name} "
        f"({published.pipeline.id}); sha256 {local.sha256}"
    )
    if not args.run:
        return 0
    run_name = (
        submitting.check_name("--run-name", args.run_name)
        if args.run_name
        else f"{published.version.name} {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime())}"
    )
    run = execute.start_run(cluster, published, local, args.experiment, run_name, print)
    print(
        f"run {run.id} started in experiment {args.experiment}"
        + (f" with {local.shown_parameters()}" if local.parameters else "")
        + f": {cluster.ui_link(run.id)}"
    )
    if args.wait:
        execute.follow(cluster, run.id, args.timeout, args.poll, print)
        print(f"run {run.id} succeeded")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from .dev import local_run, run_checks, run_exec, run_network

    endpoints = [run_network.parse_endpoint(text) for text in args.allow_host]
    if args.host_network and endpoints:
        raise RunError(
            "--host-network and --allow-host exclude each other: with the host's network every "
            "endpoint is reachable already; keep --allow-host alone"
        )
    if args.jobs < 1:
        raise RunError(f"--jobs {args.jobs}: give at least 1")
    path = Path(args.pipeline) if args.pipeline else _config(args).output
    workflow = run_checks.read_workflow(path)
    loaded, map_path = run_checks.image_map_for_run(
        Path(args.image_map) if args.image_map else None, Path(args.config), lambda: _config(args)
    )
    external = _config(args).external_images if loaded is not None and Path(args.config).is_file() else ()
    plan = local_run.plan_checked(
        workflow,
        args.param,
        os.environ,
        None if loaded is None else loaded.steps,
        local_run.SECRET_VARIABLES | set(args.secret_env),
        external,
    )
    if map_path is None:
        print(
            "warning: no image map found; images were checked for digest pins only (--image-map gives one)",
            file=sys.stderr,
        )
    else:
        print(f"every image is pinned and matches {run_checks.escape(map_path)}")
    steps = local_run.preview(plan)
    for line in local_run.describe(steps):
        print(line)
    print(run_network.describe(endpoints, args.host_network))
    if args.dry_run:
        return 0
    import tempfile

    from .engine import Engine
    from .errors import Interrupted
    from .interrupt import Token, on_signals

    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="buildtool-run-"))
    root = run_exec.check_workdir(workdir)  # before the engine is even reached
    engine = Engine()
    threads: list[threading.Thread] = []
    labels = {local_run.RUN_LABEL: str(root)}
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
                    "the step containers were stopped and removed; the outputs so far "
                    f"are in {run_checks.escape(root)}",
                ) from None
    finally:
        engine.close()
    for line in run_exec.summary(outcome):
        print(line)
    if outcome.failure is not None:
        raise RunError(outcome.failure)
    ran = sum(1 for node in outcome.nodes if node.state == "succeeded")
    print(f"the run succeeded ({ran} node(s)); outputs are in {run_checks.escape(root)}")
    return 0


def cmd_init(args: argparse.Namespace) -> int:
    from . import scaffold

    planned = scaffold.plan(
        Path(args.config),
        args.steps_module,
        pipeline=args.pipeline,
        repository=args.repository,
        registry=args.registry,
        base_image=args.base_image,
    )
    scaffold.write(planned)
    for path, _ in planned.files:
        print(f"created {path}")
    print(
        f"added [tool.buildtool] to {planned.config}: {len(planned.steps)} step image(s) "
        f"({', '.join(planned.steps)}); next: add each step's packages to its Dockerfile, then "
        "`buildtool build --push`"
    )
    return 0


def _require_platform() -> None:
    """PlatformError when the `platform` extra (the example's local platform) is not installed."""
    import importlib.util

    missing = [name for name in ("multipart", "numpy", "platform_client") if importlib.util.find_spec(name) is None]
    if missing:
        raise PlatformError(
            f"the local platform needs {', '.join(missing)}, which the toolkit does not install: "
            "install the example's `platform` extra with its client, e.g. "
            "pip install ./images/base/platform-client '.[platform]' from the example's checkout"
        )


def cmd_platform_seed(args: argparse.Namespace) -> int:
    _require_platform()
    from .dev import platform_server

    data = Path(args.data)
    stored = platform_server.seed_generated_dataset(data, args.uid, samples=args.samples, format=args.format)
    _print_created(*platform_server.ensure_accounts_file(data))  # so `platform serve --data` finds an account
    print(f"seeded training dataset {args.uid!r} ({args.samples} samples, {args.format} format) at {stored}")
    return 0


def cmd_platform_serve(args: argparse.Namespace) -> int:
    _require_platform()
    from .dev import platform_server

    data = Path(args.data)
    accounts_path = Path(args.accounts) if args.accounts else None
    if accounts_path is None:
        accounts_path, created = platform_server.ensure_accounts_file(data)
        _print_created(accounts_path, created)
    accounts = platform_server.load_accounts(accounts_path)
    if args.seed_dataset:
        platform_server.seed_generated_dataset(data, args.seed_dataset, samples=args.samples, format=args.format)

    def ready(server: platform_server.PlatformServer) -> None:
        print(f"platform API on {server.url} (data in {data}); Ctrl-C stops it", file=sys.stderr, flush=True)

    platform_server.serve_forever(
        args.host, args.port, data, accounts, token_ttl=args.token_ttl, workers=args.workers, ready=ready
    )
    return 0


def _print_created(path: Path, created: bool) -> None:
    if created:
        print(f"created {path} with account 'dev' (its secret key is in the file)", file=sys.stderr)


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="buildtool", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    top.add_argument(
        "--config", default="pyproject.toml", help="pyproject.toml holding [tool.buildtool] (default: %(default)s)"
    )
    top.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    b = sub.add_parser(
        "build",
        help="build (and push) the images; with --push, rewrite image_map.yaml",
        description="Build each image whose inputs tag the registry does not hold yet, dependencies "
        "first, independent images in parallel. With --push, push them and rewrite the "
        "image map once all succeeded.",
    )
    b.add_argument("images", nargs="*", metavar="IMAGE", help="only these images (and what they build on)")
    b.add_argument("--push", action="store_true", help="push to the registry and rewrite the image map")
    b.add_argument("--dry-run", action="store_true", help="print the plan (build or reuse, and why); change nothing")
    b.add_argument(
        "--tag",
        action="append",
        default=[],
        metavar="TAG",
        help="with --push, also tag every image TAG in the registry (e.g. the git commit); repeatable",
    )
    b.add_argument(
        "--builder",
        choices=configuration.BUILDERS,
        help="what builds: classic, buildkit or auto (default: [tool.buildtool] builder)",
    )
    b.add_argument("--jobs", "-j", type=int, default=2, help="images built at once (default: %(default)s)")
    b.add_argument(
        "--registry", help="registry host[:port] (default: [tool.buildtool] registry, or BUILDTOOL_REGISTRY)"
    )
    b.add_argument(
        "--base-image", help="external base image (default: [tool.buildtool] base_image, or BUILDTOOL_BASE_IMAGE)"
    )
    b.set_defaults(func=cmd_build)

    c = sub.add_parser(
        "compile",
        help="compile the pipeline against the image map",
        description="Compile the pipeline with every step's image pinned as image_map.yaml says. "
        "Refuses a missing, incomplete, unpinned or stale map.",
    )
    c.add_argument("--output", "-o", help="where to write the workflow (default: [tool.buildtool] output)")
    c.add_argument("--allow-stale", action="store_true", help="compile against a stale map anyway (prints a warning)")
    c.add_argument(
        "--check",
        action="store_true",
        help="write nothing; fail (exit 13) if the output differs from what compile would write now",
    )
    c.add_argument("--base-image", help=argparse.SUPPRESS)
    c.set_defaults(func=cmd_compile)

    t = sub.add_parser(
        "render",
        help="write the Dockerfiles (and layer locks) of images that have a template",
        description="Render each image's Dockerfile from its template in images/templates/, and cut "
        "its requirements lock into layer locks; writes only files that differ. "
        "See docs/images.md.",
    )
    t.add_argument("images", nargs="*", metavar="IMAGE", help="only these images (default: all)")
    t.add_argument("--base-image", help=argparse.SUPPRESS)
    t.set_defaults(func=cmd_render)

    k = sub.add_parser(
        "check",
        help="fail if image_map.yaml no longer matches the sources (offline)",
        description="Recompute every image's inputs digest from the working tree, with no engine "
        "and no network, and compare with the image map.",
    )
    k.add_argument("--base-image", help=argparse.SUPPRESS)
    k.set_defaults(func=cmd_check)

    v = sub.add_parser("verify", help="check a compiled pipeline's images: pinned, as mapped, in the registry")
    v.add_argument("pipeline", nargs="?", help="compiled workflow (default: [tool.buildtool] output)")
    v.add_argument("--offline", action="store_true", help="skip the registry lookups")
    v.set_defaults(func=cmd_verify)

    r = sub.add_parser(
        "run",
        help="run a compiled pipeline on the local engine, as Argo runs it on the cluster",
        description="Run the compiled workflow's DAG on the local engine with Argo's semantics for "
        "what kfp 1.8 emits (output files and parameters, conditions, loops, exit "
        "handlers, retries, deadlines); independent tasks at once (--jobs). Steps get no "
        "network unless --allow-host forwards a host endpoint to them. Only "
        "digest-pinned images (equal to the image map's, when there is one) and the "
        "fields local runs implement are accepted; anything else (volumes, sidecars, "
        "securityContext...) is refused by name. access_key and secret_key may come from "
        "PLATFORM_ACCESS_KEY and PLATFORM_SECRET_KEY instead of --param; a variable the "
        "workflow takes from a Kubernetes Secret comes from the host's variable of the "
        "same name. Their values are shown as ***. See docs/run.md.",
    )
    r.add_argument("pipeline", nargs="?", help="compiled workflow (default: [tool.buildtool] output)")
    r.add_argument(
        "--param",
        "-p",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a pipeline parameter (repeat for each); parameters with a default may be left out",
    )
    r.add_argument("--workdir", help="empty folder for the steps' artifacts (default: a new temporary folder)")
    r.add_argument(
        "--secret-env",
        action="append",
        default=[],
        metavar="NAME",
        help="also pass the host's NAME to a container that takes it from a Kubernetes Secret "
        "(PLATFORM_ACCESS_KEY and PLATFORM_SECRET_KEY always are); repeatable",
    )
    r.add_argument(
        "--image-map",
        help="image map the images must match (default: [tool.buildtool] image_map, "
        "when the configuration and the map exist)",
    )
    r.add_argument("--dry-run", action="store_true", help="print the resolved steps; run nothing")
    r.add_argument("--jobs", "-j", type=int, default=4, help="containers run at once (default: %(default)s)")
    r.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="HOST:PORT",
        help="let the steps reach this endpoint of the host's loopback (e.g. the platform server at "
        "127.0.0.1:8080), at the same address; nothing else is reachable. Repeatable",
    )
    r.add_argument(
        "--host-network",
        action="store_true",
        help="give the steps the host's network instead: they then reach every service of the host, "
        "its loopback included (the registry on 127.0.0.1:5000, databases, metadata endpoints)",
    )
    r.add_argument("--base-image", help=argparse.SUPPRESS)
    r.set_defaults(func=cmd_run)

    i = sub.add_parser(
        "init",
        help="add [tool.buildtool] and an image context per step function; overwrites nothing",
        description="Read the step functions of STEPS_MODULE (parsed, not imported) and write a "
        "[tool.buildtool] table into the configuration, with one image per step and its "
        "context (Dockerfile, .dockerignore) under images/. Refuses if the table or any "
        "of those files exists.",
    )
    i.add_argument("steps_module", metavar="STEPS_MODULE", help="module defining the step functions, e.g. mypkg.steps")
    i.add_argument(
        "--pipeline",
        help="module:function of the pipeline factory (default: the steps module's package's pipeline:make_pipeline)",
    )
    i.add_argument(
        "--repository", help="images are REGISTRY/REPOSITORY/IMAGE (default: [project].name, else the folder's name)"
    )
    i.add_argument("--registry", default="127.0.0.1:5000", help="registry host[:port] (default: %(default)s)")
    i.add_argument(
        "--base-image", default="python:3.11-slim", help="external base of the step images (default: %(default)s)"
    )
    i.set_defaults(func=cmd_init)

    u = sub.add_parser(
        "submit",
        help="publish the verified pipeline to Kubeflow Pipelines as a version; --run runs it",
        description="Read the compiled pipeline once, verify it (pins, map, registry), and upload "
        "exactly those bytes through kfp.Client as a version of the named pipeline, "
        "creating the pipeline when missing. The version is named after the content, so "
        "submitting the same file again creates nothing. Credentials come from the "
        "environment variable named by --token-env or --cookie-env, never the command "
        "line. See docs/submit.md.",
    )
    u.add_argument("pipeline", nargs="?", help="compiled workflow (default: [tool.buildtool] output)")
    u.add_argument("--host", help="KFP API endpoint, e.g. http://127.0.0.1:8080 (default: KF_PIPELINES_ENDPOINT)")
    u.add_argument("--pipeline-name", help="pipeline to publish to (default: the pipeline's own name)")
    u.add_argument("--version-name", help="version name (default: <pipeline>-<12 hex of the file's sha256>)")
    u.add_argument("--run", action="store_true", help="start a run of the published version")
    u.add_argument(
        "--experiment", default="Default", help="experiment of the run, created when missing (default: %(default)s)"
    )
    u.add_argument("--run-name", help="name of the run (default: the version's name and the time)")
    u.add_argument(
        "--param",
        "-p",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a run parameter (repeat for each); checked against the pipeline's parameters",
    )
    u.add_argument("--wait", action="store_true", help="with --run, follow the run until it ends")
    u.add_argument("--timeout", type=float, default=3600.0, help="seconds --wait waits (default: %(default)s)")
    u.add_argument(
        "--poll", type=float, default=5.0, help="seconds between two looks at the run (default: %(default)s)"
    )
    u.add_argument(
        "--namespace", help="Kubeflow profile namespace of a multi-user cluster (default: kfp's own context setting)"
    )
    u.add_argument("--ca-cert", metavar="PATH", help="PEM CA bundle of a cluster behind a private CA")
    u.add_argument("--token-env", metavar="VAR", help="environment variable holding a bearer token")
    u.add_argument(
        "--cookie-env",
        metavar="VAR",
        help="environment variable holding a session cookie (NAME=VALUE, e.g. authservice_session=...)",
    )
    u.add_argument("--base-image", help=argparse.SUPPRESS)
    u.set_defaults(func=cmd_submit)

    p = sub.add_parser("platform", help="the local training platform (its HTTP API), for development and tests")
    psub = p.add_subparsers(dest="platform_command", required=True, metavar="ACTION")

    def dataset_options(command: argparse.ArgumentParser) -> None:
        command.add_argument("--data", default=".platform-data", help="folder of stored files (default: %(default)s)")
        command.add_argument(
            "--samples",
            type=int,
            default=dev_defaults.DEFAULT_SAMPLES,
            help="samples in a generated dataset (default: %(default)s)",
        )
        command.add_argument(
            "--format",
            choices=("seed", "safe"),
            default="seed",
            help="dataset layout: seed is the platform's object array (read by a restricted "
            "unpickler); safe is a structured array, no pickle (default: %(default)s)",
        )

    s = psub.add_parser("serve", help="serve the platform's HTTP API until interrupted")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    s.add_argument("--port", type=int, default=8080, help="port (default: %(default)s)")
    s.add_argument(
        "--accounts",
        help="YAML/JSON file 'accounts: {ACCESS_KEY: SECRET_KEY}' "
        "(default: DATA/accounts.yaml, created with a random secret)",
    )
    s.add_argument("--seed-dataset", metavar="UID", help="store a generated training dataset under UID first")
    s.add_argument(
        "--token-ttl",
        type=float,
        default=dev_defaults.DEFAULT_TOKEN_TTL,
        metavar="SECONDS",
        help="seconds a login token stays valid (default: %(default)s)",
    )
    s.add_argument(
        "--workers",
        type=int,
        default=dev_defaults.DEFAULT_WORKERS,
        help="connections served at once; more get a 503 (default: %(default)s)",
    )
    dataset_options(s)
    s.set_defaults(func=cmd_platform_serve)
    d = psub.add_parser("seed", help="store a generated, learnable training dataset under a uid")
    d.add_argument("uid", help="training dataset uid, e.g. demo-dataset")
    dataset_options(d)
    d.set_defaults(func=cmd_platform_seed)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    # urllib3 warns of every retried connection with its objects' reprs; the registry client logs each retry
    # itself, and a failure is one error line: the warnings show with -v only.
    logging.getLogger("urllib3.connectionpool").setLevel(logging.DEBUG if args.verbose else logging.ERROR)
    command: Callable[[argparse.Namespace], int] = args.func
    try:
        return command(args)
    except BuildtoolError as exc:
        print(f"buildtool: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:  # a signal outside the commands that handle it themselves
        print("buildtool: error: interrupted (SIGINT)", file=sys.stderr)
        return 130
    except Exception as exc:  # a failure no module anticipated: one line, the traceback only with -v
        if args.verbose:
            raise
        print(
            f"buildtool: error: unexpected {exc.__class__.__name__}: {exc} (run with -v for the traceback)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
