"""The platform client against the real local platform server (and a fault proxy in front of it)."""

from __future__ import annotations

import json
import logging
import os
import time
import tracemalloc
from pathlib import Path

import pytest

from buildtool.dev.platform_server import stored_path
from platform_client import FILE_KINDS, PlatformClient, PlatformError
from tests.platform_fixtures import ACCESS_KEY, DATASET_UID, SECRET_KEY, Fault

from ..helpers import refused_port


@pytest.fixture(autouse=True)
def _capture_all_logs(caplog: pytest.LogCaptureFixture):
    """Every test also checks that nothing logged holds the secret key."""
    caplog.set_level(logging.DEBUG)
    yield
    assert SECRET_KEY not in caplog.text


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".part"))


def test_download_logs_in_and_writes_the_seeded_bytes(make_platform_client, platform_dataset_zip, tmp_path):
    client = make_platform_client()
    dest = tmp_path / "out" / "training_dataset.zip"

    assert client.download("training_dataset", DATASET_UID, dest) == dest

    assert client.logged_in
    assert dest.read_bytes() == platform_dataset_zip.read_bytes()
    assert _leftovers(dest.parent) == []


def test_download_streams_instead_of_holding_the_file(platform_server, make_platform_client, tmp_path):
    size = 24 * 1024 * 1024
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(size))
    target = stored_path(platform_server.data_dir, "training_dataset", "big")
    target.parent.mkdir(parents=True, exist_ok=True)
    big.replace(target)
    client = make_platform_client()
    client.login()

    tracemalloc.start()
    try:
        client.download("training_dataset", "big", tmp_path / "big.zip")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert (tmp_path / "big.zip").stat().st_size == size
    assert peak < size / 3, f"peak Python allocation {peak} bytes for a {size}-byte download"


def test_wrong_secret_key_fails_login_without_echoing_it(make_platform_client, tmp_path):
    wrong = "sk-wrong-3b8e11d0"
    client = make_platform_client(secret_key=wrong)

    with pytest.raises(PlatformError) as caught:
        client.download("training_dataset", DATASET_UID, tmp_path / "x.zip")

    message = str(caught.value)
    assert "login" in message and repr(ACCESS_KEY) in message and "HTTP 401" in message
    assert wrong not in message and SECRET_KEY not in message
    assert not (tmp_path / "x.zip").exists()


def test_a_server_that_echoes_the_secret_is_redacted(make_fault_proxy, make_platform_client):
    proxy = make_fault_proxy([Fault("echo", 403)])
    client = make_platform_client(proxy.port)

    with pytest.raises(PlatformError) as caught:
        client.login()

    message = str(caught.value)
    assert "HTTP 403" in message and "account_name" in message
    assert SECRET_KEY not in message and "***" in message


def test_repr_hides_the_secret_key(make_platform_client):
    assert SECRET_KEY not in repr(make_platform_client())


def test_unknown_uid_names_the_uid_and_the_status(make_platform_client, tmp_path):
    client = make_platform_client()

    with pytest.raises(PlatformError) as caught:
        client.download("training_dataset", "ds-missing", tmp_path / "out" / "x.zip")

    message = str(caught.value)
    assert "'ds-missing'" in message and "training_dataset" in message and "HTTP 404" in message
    assert not (tmp_path / "out").exists()


def test_unknown_file_type_lists_the_valid_ones(make_platform_client, tmp_path):
    with pytest.raises(ValueError, match="unknown file_type 'dataset'.*training_dataset.*model"):
        make_platform_client().download("dataset", DATASET_UID, tmp_path / "x.zip")


def test_file_kinds_follow_the_protocol_table():
    assert FILE_KINDS["training_dataset"] == "TrainingDataset"
    assert FILE_KINDS["model"] == "Model"
    assert len(FILE_KINDS) == 9


@pytest.mark.parametrize("fault", [Fault("status", 500), Fault("status", 503), Fault("drop")])
def test_transient_failures_are_retried_until_success(
    make_fault_proxy, make_platform_client, platform_dataset_zip, tmp_path, fault
):
    proxy = make_fault_proxy([fault, fault])
    client = make_platform_client(proxy.port, retries=2)

    dest = client.download("training_dataset", DATASET_UID, tmp_path / "training_dataset.zip")

    assert dest.read_bytes() == platform_dataset_zip.read_bytes()
    assert proxy.faults_left == 0
    assert proxy.requests_seen == 4  # two faults, then login and download


def test_a_download_cut_short_is_retried(make_fault_proxy, make_platform_client, platform_dataset_zip, tmp_path):
    proxy = make_fault_proxy([Fault("pass"), Fault("truncate")])  # login passes, the first download is cut
    client = make_platform_client(proxy.port)

    dest = client.download("training_dataset", DATASET_UID, tmp_path / "training_dataset.zip")

    assert dest.read_bytes() == platform_dataset_zip.read_bytes()
    assert proxy.requests_seen == 3
    assert _leftovers(tmp_path) == []


def test_5xx_that_never_ends_fails_after_the_bounded_retries(make_fault_proxy, make_platform_client, tmp_path):
    proxy = make_fault_proxy([Fault("status", 502)] * 10)
    client = make_platform_client(proxy.port, retries=2)

    with pytest.raises(PlatformError) as caught:
        client.login()

    message = str(caught.value)
    assert "after 3 attempts" in message and "HTTP 502" in message and "injected fault" in message
    assert proxy.requests_seen == 3


def test_a_server_that_never_answers_times_out_in_bounded_time(silent_server, make_platform_client, tmp_path):
    client = make_platform_client(silent_server.port, timeout=(0.5, 0.3), retries=1)

    started = time.monotonic()
    with pytest.raises(PlatformError) as caught:
        client.download("training_dataset", DATASET_UID, tmp_path / "x.zip")
    elapsed = time.monotonic() - started

    message = str(caught.value)
    assert "login" in message and "timed out" in message and "after 2 attempt(s)" in message
    assert elapsed < 3


def test_nothing_listening_is_a_clear_connection_error(make_platform_client):
    expected = r"login as 'pipeline-tester'.*failed after 2 attempt\(s\): connection failed: .*refused"
    with refused_port() as port, pytest.raises(PlatformError, match=expected):
        make_platform_client(port, retries=1).login()


def test_upload_and_accuracy_arrive_on_disk(platform_server, make_platform_client, tmp_path):
    # Bytes that a careless multipart parser would mangle.
    content = b"PK\x03\x04" + bytes(range(256)) * 64 + b"\r\n--not-the-boundary\r\n\n\r" + b"\r\n"
    model = tmp_path / "model.zip"
    model.write_bytes(content)
    client = make_platform_client()

    client.upload("model", "model-1", model)
    client.upload_accuracy("model-1", 0.875)

    assert stored_path(platform_server.data_dir, "model", "model-1").read_bytes() == content
    record = json.loads((platform_server.data_dir / "model_metadata" / "model-1.json").read_text())
    assert record == {"model_uid": "model-1", "model_accuracy": 0.875}


def test_upload_of_a_missing_file_fails_before_any_call(make_platform_client, tmp_path):
    with pytest.raises(FileNotFoundError, match="model.zip"):
        make_platform_client().upload("model", "model-1", tmp_path / "model.zip")


def test_upload_refused_by_the_server_raises(make_fault_proxy, make_platform_client, tmp_path):
    model = tmp_path / "model.zip"
    model.write_bytes(b"model")
    proxy = make_fault_proxy([Fault("pass"), Fault("status", 413)])
    client = make_platform_client(proxy.port)

    with pytest.raises(PlatformError, match=r"upload of model 'model-1' \(model.zip\).*HTTP 413"):
        client.upload("model", "model-1", model)


@pytest.mark.parametrize("accuracy", [float("nan"), float("inf"), True, "high"])
def test_accuracy_must_be_a_finite_number(make_platform_client, accuracy):
    with pytest.raises(ValueError):
        make_platform_client().upload_accuracy("model-1", accuracy)


@pytest.mark.parametrize(
    ("host", "port", "expected"),
    [
        ("platform.lab", "8080", "http://platform.lab:8080"),
        ("https://platform.lab/", 443, "https://platform.lab:443"),
        ("::1", 80, "http://[::1]:80"),
    ],
)
def test_base_url(host, port, expected):
    assert PlatformClient(host, port, ACCESS_KEY, SECRET_KEY).base_url == expected


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"port": "http"}, "port must be a number"),
        ({"port": 70000}, "between 1 and 65535"),
        ({"host": ""}, "host is empty"),
        ({"host": "platform.lab:8080"}, "pass the port separately"),
        ({"retries": -1}, "retries"),
        ({"timeout": 0}, "timeouts must be > 0"),
        ({"scheme": "ftp"}, "scheme"),
    ],
)
def test_bad_settings_are_refused(kwargs, match):
    settings = {"host": "platform.lab", "port": 80, "access_key": ACCESS_KEY, "secret_key": SECRET_KEY, **kwargs}
    with pytest.raises(ValueError, match=match):
        PlatformClient(**settings)
