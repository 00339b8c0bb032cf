"""`buildtool submit`: the verified pipeline published to Kubeflow Pipelines, and optionally run there."""

from __future__ import annotations

import argparse
import os
import sys
import time
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import Config
from ..errors import ConfigError
from .options import Subcommands, add_command, add_hidden_base_image, add_param_option, add_pipeline_argument
from .project import load_config, workflow_path

if TYPE_CHECKING:
    from ..submit.execute import Published
    from ..submit.kfp_api import Cluster
    from ..submit.kfp_data import Auth
    from ..submit.plan import Local


SUBMIT_HELP = "publish the verified pipeline to Kubeflow Pipelines as a version; --run runs it"
SUBMIT_DESCRIPTION = """\
Read the compiled pipeline once, verify it (pins, map, registry), and upload exactly those bytes through
kfp.Client as a version of the named pipeline, creating the pipeline when missing. The version is named after
the content, so submitting the same file again creates nothing. Credentials come from the environment variable
named by --token-env or --cookie-env, never the command line. See docs/submit.md."""


def add_submit(sub: Subcommands) -> None:
    command = add_command(sub, "submit", cmd_submit, SUBMIT_HELP, SUBMIT_DESCRIPTION)
    add_pipeline_argument(command)
    command.add_argument("--host", help="KFP API endpoint, e.g. http://127.0.0.1:8080 (default: KF_PIPELINES_ENDPOINT)")
    command.add_argument("--pipeline-name", help="pipeline to publish to (default: the pipeline's own name)")
    command.add_argument("--version-name", help="version name (default: <pipeline>-<12 hex of the file's sha256>)")
    command.add_argument("--run", action="store_true", help="start a run of the published version")
    command.add_argument(
        "--experiment", default="Default", help="experiment of the run, created when missing (default: %(default)s)"
    )
    command.add_argument("--run-name", help="name of the run (default: the version's name and the time)")
    add_param_option(command, "a run parameter (repeat for each); checked against the pipeline's parameters")
    command.add_argument("--wait", action="store_true", help="with --run, follow the run until it ends")
    command.add_argument("--timeout", type=float, default=3600.0, help="seconds --wait waits (default: %(default)s)")
    command.add_argument(
        "--poll", type=float, default=5.0, help="seconds between two looks at the run (default: %(default)s)"
    )
    add_cluster_options(command)
    add_hidden_base_image(command)


def add_cluster_options(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--namespace", help="Kubeflow profile namespace of a multi-user cluster (default: kfp's own context setting)"
    )
    command.add_argument("--ca-cert", metavar="PATH", help="PEM CA bundle of a cluster behind a private CA")
    command.add_argument("--token-env", metavar="VAR", help="environment variable holding a bearer token")
    command.add_argument(
        "--cookie-env",
        metavar="VAR",
        help="environment variable holding a session cookie (NAME=VALUE, e.g. authservice_session=...)",
    )


def cmd_submit(args: argparse.Namespace) -> int:
    from ..submit.execute import check_host, credentials, publish

    config = load_config(args)
    path = workflow_path(args, config)
    auth = credentials(args.token_env, args.cookie_env, os.environ)
    host = check_host(args.host or os.environ.get("KF_PIPELINES_ENDPOINT"), auth)
    ca_cert = Path(args.ca_cert) if args.ca_cert else None
    check_options(args, ca_cert)
    data, workflow = verified(config, path)
    planned = local_plan(args, workflow, data)
    cluster = connect(args, host, auth, ca_cert)
    published = publish(cluster, planned, data, print)
    print(
        f"version {published.version.name}: {published.version.id} of pipeline {published.pipeline.name} "
        f"({published.pipeline.id}); sha256 {planned.sha256}"
    )
    if args.run:
        start_and_follow(args, cluster, published, planned)
    return 0


def check_options(args: argparse.Namespace, ca_cert: Path | None) -> None:
    if ca_cert is not None and not ca_cert.is_file():
        raise ConfigError(f"--ca-cert {ca_cert}: not a file; give the PEM bundle of the cluster's CA")
    if args.wait and not args.run:
        raise ConfigError("--wait follows a run: add --run")
    if args.timeout <= 0 or args.poll <= 0:
        raise ConfigError("--timeout and --poll take a number of seconds above 0")


def verified(config: Config, path: Path) -> tuple[bytes, dict[str, Any]]:
    """The pipeline's bytes, read once (these are checked, then uploaded), and the workflow verify read from them."""
    from ..gate.verify import read_pipeline, verify_pipeline
    from ..push.registry import Registry

    data = read_pipeline(path)
    with closing(Registry()) as registry:
        workflow = verify_pipeline(config, path, registry, data=data)
    print(f"{path}: every image is pinned, matches {config.image_map.name} and exists in the registry")
    return data, workflow


def local_plan(args: argparse.Namespace, workflow: dict[str, Any], data: bytes) -> Local:
    from ..submit.plan import local

    planned = local(
        workflow,
        data,
        pipeline_name=args.pipeline_name,
        version_name=args.version_name,
        pairs=args.param,
        environment=os.environ,
        run=args.run,
    )
    if args.run and planned.secrets_declared:
        print(
            f"warning: the pipeline takes {' and '.join(planned.secrets_declared)} as run parameters, which KFP "
            'shows in the run\'s page and pod spec; compile with credentials = "k8s-secret:NAME" instead',
            file=sys.stderr,
        )
    return planned


def connect(args: argparse.Namespace, host: str, auth: Auth, ca_cert: Path | None) -> Cluster:
    from ..submit.kfp_api import Cluster

    cluster = Cluster(host, auth, namespace=args.namespace, ca_cert=ca_cert)
    if args.run and cluster.namespace_in_use() is None and cluster.multi_user():
        raise ConfigError(
            f"{host} is a multi-user Kubeflow: experiments and runs belong to a profile's namespace; "
            "pass --namespace NS"
        )
    return cluster


def start_and_follow(args: argparse.Namespace, cluster: Cluster, published: Published, planned: Local) -> None:
    from ..submit.execute import follow, start_run
    from ..submit.plan import check_name

    run_name = (
        check_name("--run-name", args.run_name)
        if args.run_name
        else f"{published.version.name} {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime())}"
    )
    run = start_run(cluster, published, planned, args.experiment, run_name, print)
    print(
        f"run {run.id} started in experiment {args.experiment}"
        + (f" with {planned.shown_parameters()}" if planned.parameters else "")
        + f": {cluster.ui_link(run.id)}"
    )
    if args.wait:
        follow(cluster, run.id, args.timeout, args.poll, print)
        print(f"run {run.id} succeeded")
