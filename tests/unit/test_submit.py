"""`buildtool submit` against the fake KFP v1 API server (tests/fake_kfp.py), through kfp.Client unmodified.

The project is locked and compiled with kfp's real compiler; its images are served by the fake registry,
so submit's verification (pins, map, registry) is the real one.
"""

from __future__ import annotations

import hashlib
import re
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
import yaml

from buildtool import cli, config, reference
from buildtool.errors import ClusterError
from buildtool.gate import compiler
from buildtool.inputs.digest import LABEL_INPUTS
from buildtool.lock import image_map
from buildtool.submit import execute, kfp_api, kfp_data
from buildtool.submit.plan import content_name, decide, local, parse_parameters

from ..fake_kfp import FakeKfp
from ..submit_fixtures import COOKIE, PARAMS, TOKEN, Submitter


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- publishing --------------------------------------------------------------------------------------------------


def test_first_submit_creates_the_pipeline_and_the_content_named_version(submit: Submitter) -> None:
    code, out, err = submit()
    assert code == 0, err
    name = f"pipeline-{_sha(submit.pipeline)[:12]}"
    # KFP's first version is named after the pipeline; the content-named one is the default, and what runs use.
    assert submit.kfp.versions("pipeline") == sorted(["pipeline", name])
    pipeline = submit.kfp.pipeline("pipeline")
    assert pipeline is not None and pipeline.versions[pipeline.default_version].name == name
    assert [(kind, n, data) for kind, n, data in submit.kfp.uploads] == [
        ("pipeline", "pipeline", submit.pipeline.read_bytes()),
        ("version", name, submit.pipeline.read_bytes()),
    ]
    assert f"version {name}: " in out and "pipeline pipeline: create" in out


def test_resubmitting_the_same_file_creates_nothing(submit: Submitter) -> None:
    assert submit()[0] == 0
    before = (submit.kfp.changes, list(submit.kfp.uploads))
    code, out, _ = submit()
    assert code == 0
    assert (submit.kfp.changes, submit.kfp.uploads) == before
    assert "nothing to upload" in out
    assert all(method == "GET" for method, _ in submit.kfp.requests[-2:])


def test_a_changed_file_makes_one_new_version(submit: Submitter) -> None:
    assert submit()[0] == 0
    steps = submit.root / "pipeline" / "steps.py"  # a step's body edited, then compiled again: a new file
    steps.write_text(steps.read_text().replace("    import os\n", "    import os  # edited\n", 1))
    loaded = config.load(submit.root / "pyproject.toml")
    assert compiler.compile_pipeline(loaded, loaded.output) == []
    assert submit()[0] == 0
    versions = submit.kfp.versions("pipeline")
    assert len(versions) == 3 and f"pipeline-{_sha(submit.pipeline)[:12]}" in versions
    assert [kind for kind, _, _ in submit.kfp.uploads] == ["pipeline", "version", "version"]


def test_version_and_pipeline_names_can_be_chosen(submit: Submitter) -> None:
    code, _, err = submit("--pipeline-name", "lab-training", "--version-name", "v1.2")
    assert code == 0, err
    assert submit.kfp.versions("lab-training") == ["lab-training", "v1.2"]


def test_two_submits_at_once_end_with_one_pipeline_and_one_version(submit: Submitter) -> None:
    data = submit.pipeline.read_bytes()
    workflow = yaml.safe_load(data)
    decided = local(workflow, data, pipeline_name=None, version_name=None, pairs=[], environment={}, run=False)
    submit.kfp.barrier = threading.Barrier(2)  # both list the pipelines before either creates it
    results: list[object] = []

    def one() -> None:
        cluster = kfp_api.Cluster(submit.kfp.url, kfp_data.Auth("none"))
        try:
            results.append(execute.publish(cluster, decided, data, lambda line: None))
        except Exception as exc:  # handed to the test
            results.append(exc)

    threads = [threading.Thread(target=one) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert all(isinstance(r, execute.Published) for r in results), results
    published = [r for r in results if isinstance(r, execute.Published)]
    assert len({p.version.id for p in published}) == 1 and len({p.pipeline.id for p in published}) == 1
    assert len(submit.kfp.pipelines) == 1
    assert submit.kfp.versions("pipeline") == sorted(["pipeline", decided.version_name])


# -- refused before anything changes on the server ----------------------------------------------------------------


def _unpinned(path: Path) -> None:
    text = path.read_text()
    path.write_text(re.sub(r"(image: \S+/t/training):in-\w+@sha256:\w+", r"\1:latest", text, count=1))


def _missing_from_registry(submit: Submitter) -> reference.Reference:
    text = submit.pipeline.read_text()
    pinned = re.search(r"image: (\S+/t/training:in-\w+@sha256:\w+)", text)
    assert pinned
    ref = reference.parse(pinned[1])
    submit.registry.forget(ref.path, ref.digest or "")
    return ref


@pytest.mark.parametrize(
    "case, fragment",
    [
        ("unpinned", "is not pinned"),
        ("missing-from-registry", "not in the registry"),
        ("map-not-a-lock", "image_map.yaml"),
        ("absent", "not found; compile it"),
        ("stale", "is stale: "),
    ],
)
def test_a_pipeline_that_fails_verification_is_never_uploaded(submit: Submitter, case: str, fragment: str) -> None:
    forgotten = None
    if case == "unpinned":
        _unpinned(submit.pipeline)
    elif case == "missing-from-registry":
        forgotten = _missing_from_registry(submit)
    elif case == "stale":  # a step's body edited since the pipeline was compiled: the cluster would run old code
        steps = submit.root / "pipeline" / "steps.py"
        steps.write_text(steps.read_text().replace("    import os\n", "    import os  # edited\n", 1))
    elif case == "map-not-a-lock":
        (submit.root / "image_map.yaml").write_text(
            (submit.root / "image_map.yaml").read_text().replace("training:", "trainer:", 1)
        )
    else:
        submit.pipeline.unlink()
    try:
        code, out, err = submit("--run", *PARAMS)
    finally:
        if forgotten is not None:  # the registry is the module's: serve the manifest again (same digest)
            inputs = {
                locked.reference: locked.inputs_digest
                for locked in image_map.load(submit.root / "image_map.yaml").images.values()
            }
            submit.registry.store(forgotten.path, forgotten.tag or "", labels={LABEL_INPUTS: inputs[str(forgotten)]})
    assert code in (3, 10, 13), err
    assert err.startswith("buildtool: error: ") and fragment in err and err.count("\n") == 1
    assert submit.kfp.requests == [] and submit.kfp.uploads == []


# -- runs ---------------------------------------------------------------------------------------------------------


def test_run_and_wait_until_succeeded_runs_exactly_that_version_with_the_parameters(submit: Submitter) -> None:
    code, out, err = submit("--run", "--wait", "--experiment", "nightly", *PARAMS)
    assert code == 0, err
    (run,) = submit.kfp.runs.values()
    pipeline = submit.kfp.pipeline("pipeline")
    assert pipeline is not None
    version = pipeline.versions[run.version_id]
    assert version.name == f"pipeline-{_sha(submit.pipeline)[:12]}"
    assert version.package == submit.pipeline.read_bytes()
    assert run.parameters == {
        "training_task_uid": "t1",
        "training_dataset_uid": "d1",
        "model_uid": "m1",
        "learning_rate": "0.01",
        "host": "platform.example.com",
        "port": "443",
        "access_key": "ak",
        "secret_key": "s3cr3t-value",
    }
    assert [e["name"] for e in submit.kfp.experiments.values()] == ["nightly"]
    assert f"run {run.id} started" in out and f"{submit.kfp.url}/#/runs/details/{run.id}" in out
    assert f"run {run.id}: Running" in out and f"run {run.id}: Succeeded" in out
    # Again: the experiment and the version are found, a second run starts.
    assert submit("--run", "--experiment", "nightly", *PARAMS)[0] == 0
    assert len(submit.kfp.experiments) == 1 and len(submit.kfp.runs) == 2
    assert {r.version_id for r in submit.kfp.runs.values()} == {run.version_id}


def test_a_failed_run_exits_17(submit: Submitter) -> None:
    submit.kfp.run_states = ["Pending", "Running", "Failed"]
    code, out, err = submit("--run", "--wait", *PARAMS)
    assert code == 17 and "ended Failed" in err and "#/runs/details/" in err
    assert "Pending" in out and "Running" in out


def test_a_run_that_outlasts_the_timeout_exits_18(submit: Submitter) -> None:
    submit.kfp.run_states = ["Running"]
    started = time.monotonic()
    code, _, err = submit("--run", "--wait", "--timeout", "0.5", *PARAMS)
    assert code == 18 and "still Running after 0.5 s" in err
    assert time.monotonic() - started < 10


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["-p", "learnig_rate=0.1"], "-p learnig_rate: the pipeline declares no such parameter"),
        (["-p", "model_uid"], "expected NAME=VALUE"),
        (
            [],
            "the pipeline needs host, learning_rate, model_uid, port, secret_key, training_dataset_uid, "
            "training_task_uid",
        ),
    ],
)
def test_parameters_are_checked_before_anything_is_created(
    submit: Submitter, monkeypatch: pytest.MonkeyPatch, args: list[str], fragment: str
) -> None:
    extra = [] if not args else PARAMS
    if not args:
        monkeypatch.delenv("PLATFORM_SECRET_KEY")
    code, _, err = submit("--run", *extra, *args)
    assert code == 2 and fragment in err, err
    assert submit.kfp.requests == []


def test_secret_parameters_warn_and_never_show(submit: Submitter) -> None:
    code, out, err = submit("--run", *PARAMS)
    assert code == 0, err
    assert 'credentials = "k8s-secret:NAME"' in err and "secret_key=***" in out
    (run,) = submit.kfp.runs.values()
    assert run.parameters["secret_key"] == "s3cr3t-value"


def test_the_server_refuses_a_parameter_as_invalid(submit: Submitter) -> None:
    """A server-side validation error (here: a version whose workflow declares fewer parameters) is exit 16."""
    assert submit()[0] == 0
    pipeline = submit.kfp.pipeline("pipeline")
    assert pipeline is not None
    for version in pipeline.versions.values():
        version.parameters = [p for p in version.parameters if p["name"] != "port"]
    code, _, err = submit("--run", *PARAMS)
    assert code == 16 and "refused it as invalid" in err and "Unrecognized input parameter: port" in err


# -- credentials, TLS and transport ------------------------------------------------------------------------------


def test_a_token_from_the_named_variable_is_sent_as_bearer(submit: Submitter, monkeypatch: pytest.MonkeyPatch) -> None:
    submit.kfp.token = TOKEN
    monkeypatch.setenv("KFP_TOKEN", TOKEN)
    code, _, err = submit("--token-env", "KFP_TOKEN")
    assert code == 0, err
    assert all(h.get("authorization") == f"Bearer {TOKEN}" for h in submit.kfp.headers_seen)


def test_a_cookie_from_the_named_variable(submit: Submitter, monkeypatch: pytest.MonkeyPatch) -> None:
    submit.kfp.cookie = COOKIE
    monkeypatch.setenv("KFP_COOKIE", COOKIE)
    assert submit("--cookie-env", "KFP_COOKIE")[0] == 0


@pytest.mark.parametrize(
    "option, fragment",
    [
        ([], "HTTP 401 (not authenticated; sent no credential of buildtool's"),
        (["--token-env", "WRONG_TOKEN"], "HTTP 401 (not authenticated; sent the bearer token from $WRONG_TOKEN)"),
        (["--cookie-env", "WRONG_COOKIE"], "HTTP 401 (not authenticated; sent the session cookie from $WRONG_COOKIE)"),
    ],
)
def test_401_names_the_credential_kind_never_its_value(
    submit: Submitter, monkeypatch: pytest.MonkeyPatch, option: list[str], fragment: str
) -> None:
    submit.kfp.token = TOKEN
    monkeypatch.setenv("WRONG_TOKEN", "not-the-token-0000")
    monkeypatch.setenv("WRONG_COOKIE", "authservice_session=stale-0000")
    code, _, err = submit(*option)
    assert code == 16 and fragment in err, err
    assert "not-the-token-0000" not in err and "stale-0000" not in err
    assert submit.kfp.uploads == []


def test_403_says_who_was_refused(submit: Submitter, monkeypatch: pytest.MonkeyPatch) -> None:
    submit.kfp.forbidden = True
    monkeypatch.setenv("KFP_TOKEN", TOKEN)
    code, _, err = submit("--token-env", "KFP_TOKEN", "--namespace", "team-a")
    assert code == 16 and "HTTP 403 (forbidden; sent the bearer token from $KFP_TOKEN)" in err
    assert "'team-a'" in err


@pytest.mark.parametrize(
    "env, args, fragment",
    [
        ({}, ["--token-env", "UNSET_VAR"], "--token-env UNSET_VAR: that environment variable is not set"),
        ({"T": "a\nb"}, ["--token-env", "T"], "line break"),
        ({"T": "x", "C": "y"}, ["--token-env", "T", "--cookie-env", "C"], "both given"),
        ({"T": "x"}, ["--token-env", "T", "--host", "http://kfp.example.com"], "in clear text"),
        ({}, ["--host", "https://user:pw@kfp.example.com"], "user:password@"),
        ({}, ["--ca-cert", "/nonexistent/ca.pem"], "--ca-cert /nonexistent/ca.pem: not a file"),
        ({}, ["--wait"], "--wait follows a run"),
    ],
)
def test_bad_options_are_refused_before_any_request(
    submit: Submitter, monkeypatch: pytest.MonkeyPatch, env: dict[str, str], args: list[str], fragment: str
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    code, _, err = submit(*args)
    assert code == 2 and fragment in err, err
    assert submit.kfp.requests == []


def test_no_host_at_all(submit: Submitter) -> None:
    submit.capsys.readouterr()
    code = cli.main(["--config", str(submit.root / "pyproject.toml"), "submit"])
    assert code == 2 and "KF_PIPELINES_ENDPOINT" in submit.capsys.readouterr().err


def test_the_host_defaults_to_kf_pipelines_endpoint(submit: Submitter, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KF_PIPELINES_ENDPOINT", submit.kfp.url)
    submit.capsys.readouterr()
    assert cli.main(["--config", str(submit.root / "pyproject.toml"), "submit"]) == 0
    assert len(submit.kfp.uploads) == 2


def test_an_unreachable_host_is_one_line(submit: Submitter) -> None:
    code, _, err = submit(host="http://127.0.0.1:9")
    assert code == 16 and "unreachable" in err and err.count("\n") == 1


def test_a_server_that_answers_500_then_200_is_asked_again(submit: Submitter) -> None:
    submit.kfp.fail_next = [500, 503]
    code, _, err = submit()
    assert code == 0, err
    assert submit.kfp.requests[0] == submit.kfp.requests[1] == submit.kfp.requests[2]
    assert len(submit.kfp.uploads) == 2


def test_a_server_that_keeps_failing_is_exit_16(submit: Submitter) -> None:
    submit.kfp.fail_next = [500] * 10
    code, _, err = submit()
    assert code == 16 and "HTTP 500" in err
    assert len(submit.kfp.requests) == 4  # the first try and three retries


def test_a_redirect_is_not_followed(submit: Submitter) -> None:
    submit.kfp.fail_next = [302]
    code, _, err = submit()
    assert code == 16 and "not followed" in err and "--cookie-env" in err


@pytest.fixture
def tls_kfp(tmp_path: Path) -> Iterator[tuple[FakeKfp, Path]]:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    cert.configure_cert(context)
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    with FakeKfp(tls=context) as kfp:
        yield kfp, bundle


def test_tls_with_a_private_ca(submit: Submitter, tls_kfp: tuple[FakeKfp, Path]) -> None:
    kfp, bundle = tls_kfp
    code, out, err = submit("--ca-cert", str(bundle), host=kfp.url)
    assert code == 0, err
    assert [kind for kind, _, _ in kfp.uploads] == ["pipeline", "version"]


def test_tls_without_the_ca_fails_closed(submit: Submitter, tls_kfp: tuple[FakeKfp, Path]) -> None:
    kfp, _ = tls_kfp
    code, _, err = submit(host=kfp.url)
    assert code == 16 and "TLS failed" in err and "--ca-cert" in err
    assert kfp.uploads == []


# -- the plan, with no server -------------------------------------------------------------------------------------


def test_content_name_follows_the_bytes() -> None:
    assert content_name("Training pipeline", b"a") == "training-pipeline-" + hashlib.sha256(b"a").hexdigest()[:12]
    assert content_name("x", b"a") != content_name("x", b"b")


@pytest.mark.parametrize(
    "pipeline, version, decision",
    [
        (False, False, ("create", "create")),
        (True, False, ("reuse", "create")),
        (True, True, ("reuse", "reuse")),
    ],
)
def test_decide(pipeline: bool, version: bool, decision: tuple[str, str]) -> None:
    made = decide(pipeline, version)
    assert (made.pipeline, made.version) == decision


def test_secret_parameters_come_from_the_platform_variables() -> None:
    declared = {"access_key": None, "secret_key": None, "epochs": "1"}
    got = parse_parameters([], declared, {"PLATFORM_ACCESS_KEY": "a", "PLATFORM_SECRET_KEY": "b"})
    assert got == {"access_key": "a", "secret_key": "b"}


def test_a_server_that_never_answers_times_out(tmp_path: Path) -> None:
    """Accepts the connection, reads the request, says nothing: each try ends at the read timeout."""
    silent = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                connection, _ = silent.accept()
            except OSError:
                return
            held.append(connection)

    threading.Thread(target=accept, daemon=True).start()
    cluster = kfp_api.Cluster(f"http://127.0.0.1:{silent.getsockname()[1]}", kfp_data.Auth("none"), read_timeout=0.1)
    started = time.monotonic()
    try:
        with pytest.raises(ClusterError, match=r"no answer in time after 4 tries"):
            cluster.find_pipeline("pipeline")
    finally:
        silent.close()
        for connection in held:
            connection.close()
    assert time.monotonic() - started < 10


def test_submit_verifies_through_verify_pipeline_and_uploads_the_bytes_it_verified(
    submit: Submitter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`verify`'s own function checks the bytes read once: whatever `buildtool verify` checks, submit checks."""
    from buildtool.gate import verify

    seen: list[bytes | None] = []
    real = verify.verify_pipeline

    def spy(config: object, path: Path, registry: object, *, data: bytes | None = None) -> object:
        seen.append(data)
        return real(config, path, registry, data=data)  # type: ignore[arg-type]

    monkeypatch.setattr(verify, "verify_pipeline", spy)
    assert submit()[0] == 0
    assert seen == [submit.pipeline.read_bytes()]
    assert {data for _, _, data in submit.kfp.uploads} == {seen[0]}


def test_a_multi_user_cluster_needs_a_namespace_to_run(submit: Submitter) -> None:
    submit.kfp.multi_user = True
    code, _, err = submit("--run", *PARAMS)
    assert code == 2 and "pass --namespace NS" in err
    assert submit.kfp.changes == 0
    assert submit("--run", "--namespace", "team-a", *PARAMS)[0] == 0
    (experiment,) = submit.kfp.experiments.values()
    assert experiment["resource_references"] == [
        {"key": {"type": "NAMESPACE", "id": "team-a"}, "relationship": "OWNER"}
    ]


@pytest.mark.parametrize(
    "context, fragment",
    [
        ("{not json", "JSONDecodeError"),
        ("[1, 2]", "TypeError"),
    ],
)
def test_a_broken_kfp_context_file_is_one_line(submit: Submitter, context: str, fragment: str) -> None:
    folder = Path(submit.root.parent / ".config" / "kfp")  # HOME is the test's folder
    folder.mkdir(parents=True)
    (folder / "context.json").write_text(context)
    code, _, err = submit()
    assert code == 16 and fragment in err and "context.json" in err
    assert submit.kfp.requests == []


def test_the_namespace_of_kfps_context_is_used(submit: Submitter) -> None:
    folder = Path(submit.root.parent / ".config" / "kfp")
    folder.mkdir(parents=True)
    (folder / "context.json").write_text('{"namespace": "team-b"}')
    assert submit("--run", *PARAMS)[0] == 0
    (experiment,) = submit.kfp.experiments.values()
    assert experiment["resource_references"][0]["key"] == {"type": "NAMESPACE", "id": "team-b"}


def test_a_parameter_value_cannot_forge_an_output_line(submit: Submitter) -> None:
    params = [p if not p.startswith("model_uid=") else "model_uid=m\nbuildtool: error: forged" for p in PARAMS]
    code, out, _ = submit("--run", *params)
    assert code == 0
    assert "model_uid=m\\nbuildtool: error: forged" in out and "\nbuildtool: error: forged" not in out
    (run,) = submit.kfp.runs.values()
    assert run.parameters["model_uid"] == "m\nbuildtool: error: forged"  # the run gets the value as given
