"""Carry a submit out: publish the version (creating the pipeline when missing), start a run, follow it.

Names are the keys: a second submit of the same file finds what the first created, and a 409 from a
submit running at the same time is read as "already there" and answered by reading it back.
"""

from __future__ import annotations

import os
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from ..errors import ClusterError, ClusterRunFailed, ClusterRunTimeout, ConfigError
from ..reference import is_loopback
from . import plan
from .kfp_api import Cluster
from .kfp_data import AlreadyExists, Auth, Pipeline, Run, Version

Say = Callable[[str], None]
SUCCEEDED = "succeeded"
ENDED = {"succeeded", "failed", "error", "skipped"}  # what kfp.Client's own wait stops on


@dataclass(frozen=True)
class Published:
    pipeline: Pipeline
    version: Version
    decision: plan.Decision


def credentials(token_env: str | None, cookie_env: str | None, environ: Mapping[str, str]) -> Auth:
    """The credential named on the command line, read from the environment (never from argv)."""
    if token_env and cookie_env:
        raise ConfigError("--token-env and --cookie-env both given: a cluster takes one of them")
    for option, variable, kind in (("--token-env", token_env, "token"), ("--cookie-env", cookie_env, "cookie")):
        if not variable:
            continue
        value = environ.get(variable, "")
        if not value.strip():
            raise ConfigError(
                f"{option} {variable}: that environment variable is not set or empty; "
                f"export the {'bearer token' if kind == 'token' else 'session cookie'} in it"
            )
        if any(ch in value for ch in "\r\n\0"):
            raise ConfigError(
                f"{option} {variable}: the value holds a line break or NUL, which would forge "
                "another header; export it on one line"
            )
        if kind == "token":
            return Auth(f"the bearer token from ${variable}", token=value.strip())
        return Auth(f"the session cookie from ${variable}", cookie=value.strip())
    return Auth("no credential of buildtool's (only what kfp's own configuration adds)")


def check_host(host: str | None, auth: Auth) -> str:
    if not host:
        raise ConfigError(
            "no KFP endpoint: pass --host URL or set KF_PIPELINES_ENDPOINT "
            "(e.g. http://127.0.0.1:8080 through `kubectl port-forward`)"
        )
    parsed = urllib.parse.urlsplit(host)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ConfigError(f"--host {host[:120]!r}: expected http(s)://HOST[:PORT][/PATH]")
    if parsed.username or parsed.password:
        raise ConfigError("--host carries a user:password@; give the credential with --token-env or --cookie-env")
    if parsed.scheme == "http" and (auth.token or auth.cookie) and not is_loopback(parsed.netloc):
        raise ConfigError(
            f"--host {parsed.scheme}://{parsed.hostname}: {auth.label} would cross the network "
            "in clear text; use https (or a port-forward on 127.0.0.1)"
        )
    return host


def publish(cluster: Cluster, local: plan.Local, data: bytes, say: Say) -> Published:
    """The version `local.version_name` of pipeline `local.pipeline_name`, holding `data`, created when missing."""
    name, version_name = local.pipeline_name, local.version_name
    pipeline = cluster.find_pipeline(name)
    version = cluster.find_version(pipeline, version_name) if pipeline is not None else None
    decision = plan.decide(pipeline is not None, version is not None)
    say(f"pipeline {name}: {decision.pipeline}; version {version_name}: {decision.version} ({decision.because})")
    if pipeline is not None and version is not None:
        return Published(pipeline, version, decision)
    with tempfile.TemporaryDirectory(prefix="buildtool-submit-") as folder:
        package = Path(folder) / "pipeline.yaml"  # the server reads the format from the name
        fd = os.open(package, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        if pipeline is None:
            try:
                pipeline = cluster.create_pipeline(name, package)
                say(f"created pipeline {name} ({pipeline.id}); KFP gave it a first version named {name}")
            except AlreadyExists:
                say(f"pipeline {name} was created meanwhile (HTTP 409); reading it back")
                pipeline = _must(cluster.find_pipeline(name), f"pipeline {name!r}")
            # The first version is named after the pipeline; the content-named one is made next, unless
            # --version-name asked for exactly that name.
            version = cluster.find_version(pipeline, version_name)
        assert pipeline is not None
        if version is None:
            try:
                version = cluster.create_version(pipeline, version_name, package)
                say(f"created version {version_name} ({version.id})")
            except AlreadyExists:
                say(f"version {version_name} was created meanwhile (HTTP 409); reading it back")
                version = _must(cluster.find_version(pipeline, version_name), f"version {version_name!r}")
    return Published(pipeline, version, decision)


T = TypeVar("T", Pipeline, Version)


def _must(found: T | None, what: str) -> T:
    if found is None:
        raise ClusterError(
            f"the server answered 409 (already exists) for {what}, but lists none of that name; "
            "was it deleted meanwhile? submit again"
        )
    return found


def start_run(
    cluster: Cluster, published: Published, local: plan.Local, experiment: str, run_name: str, say: Say
) -> Run:
    """A run of exactly `published.version` in `experiment` (created when missing)."""
    experiment_id = cluster.find_experiment(experiment)
    if experiment_id is None:
        try:
            experiment_id = cluster.create_experiment(experiment)
            say(f"created experiment {experiment} ({experiment_id})")
        except AlreadyExists:
            experiment_id = cluster.find_experiment(experiment)
            if experiment_id is None:
                raise ClusterError(
                    f"the server answered 409 for experiment {experiment!r} but lists none; submit again"
                ) from None
    run = cluster.create_run(experiment_id, run_name, published.pipeline, published.version, local.parameters)
    return run


def follow(
    cluster: Cluster,
    run_id: str,
    timeout: float,
    poll: float,
    say: Say,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Run:
    """Poll the run until it ends; ClusterRunFailed unless it Succeeded, ClusterRunTimeout after `timeout` s."""
    deadline = clock() + timeout
    last = None
    while True:
        run = cluster.run(run_id)
        if run.state != last:
            say(f"run {run_id}: {run.state or 'not started yet'}")
            last = run.state
        if run.state.lower() in ENDED:
            if run.state.lower() != SUCCEEDED:
                raise ClusterRunFailed(f"run {run_id} ended {run.state}; see {cluster.ui_link(run_id)}")
            return run
        left = deadline - clock()
        if left <= 0:
            raise ClusterRunTimeout(
                f"run {run_id} still {run.state or 'pending'} after {timeout:g} s (--timeout); "
                f"it goes on on the cluster: {cluster.ui_link(run_id)}"
            )
        sleep(min(poll, left))
