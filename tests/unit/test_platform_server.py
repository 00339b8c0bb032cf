"""The local platform server, spoken to with plain HTTP."""

from __future__ import annotations

import json
import socket

import pytest
import requests

from buildtool.dev.platform_server import (
    ACCURACY_PATH,
    FILE_KINDS,
    LOGIN_PATH,
    PlatformServer,
    load_accounts,
    seed_dataset,
    serve_forever,
    stored_path,
)
from buildtool.errors import ConfigError, PlatformError
from platform_client import FILE_KINDS as CLIENT_FILE_KINDS
from tests.platform_fixtures import ACCESS_KEY, DATASET_UID, SECRET_KEY

DOWNLOAD = "/api/v0.1/file_operation/TrainingDatasetFileManager/download"
UPLOAD = "/api/v0.1/file_operation/ModelFileManager/upload"


def _post(server: PlatformServer, path: str, **kwargs) -> requests.Response:
    return requests.post(server.url + path, timeout=5, **kwargs)


def _token(server: PlatformServer) -> str:
    response = _post(server, LOGIN_PATH, json={"account_name": ACCESS_KEY, "password": SECRET_KEY})
    assert response.status_code == 200
    return response.json()["token"]


def _auth(server: PlatformServer) -> dict[str, str]:
    return {"Authorization": f"Bearer {_token(server)}"}


def test_login_answers_a_token(platform_server):
    assert len(_token(platform_server)) >= 32


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"account_name": ACCESS_KEY, "password": "wrong"}, 401),
        ({"account_name": "nobody", "password": SECRET_KEY}, 401),
        ({"account_name": ACCESS_KEY}, 400),
        ([ACCESS_KEY, SECRET_KEY], 400),
    ],
)
def test_login_refusals(platform_server, body, status):
    response = _post(platform_server, LOGIN_PATH, json=body)
    assert response.status_code == status
    assert SECRET_KEY not in response.text


def test_bad_json_is_400(platform_server):
    response = _post(platform_server, LOGIN_PATH, data=b"{not json", headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert "not valid JSON" in response.json()["error"]


@pytest.mark.parametrize("authorization", [None, "Bearer not-a-token", "Basic abc"])
def test_calls_need_the_login_token(platform_server, authorization):
    headers = {"Authorization": authorization} if authorization else {}
    response = _post(platform_server, DOWNLOAD, json={"training_dataset_uid": DATASET_UID}, headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"


def test_download_with_the_token(platform_server, platform_dataset_zip):
    body = {"training_dataset_uid": DATASET_UID}
    response = _post(platform_server, DOWNLOAD, json=body, headers=_auth(platform_server))
    assert response.status_code == 200
    assert response.content == platform_dataset_zip.read_bytes()
    assert response.headers["Content-Length"] == str(len(response.content))


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"training_dataset_uid": "ds-nope"}, 404),
        ({"training_dataset_uid": "../../etc/passwd"}, 400),
        ({"model_uid": DATASET_UID}, 400),
    ],
)
def test_download_refusals(platform_server, body, status):
    response = _post(platform_server, DOWNLOAD, json=body, headers=_auth(platform_server))
    assert response.status_code == status


def test_unknown_kind_and_path_are_404(platform_server):
    headers = _auth(platform_server)
    unknown_kind = "/api/v0.1/file_operation/DatasetFileManager/download"
    assert _post(platform_server, unknown_kind, json={}, headers=headers).status_code == 404
    assert _post(platform_server, "/api/v9/nothing", json={}, headers=headers).status_code == 404


def test_only_post_is_served(platform_server):
    response = requests.get(platform_server.url + LOGIN_PATH, timeout=5)
    assert response.status_code == 405
    assert response.headers["Allow"] == "POST"


def test_upload_stores_the_file_field(platform_server):
    files = {"other": ("a.txt", b"not this"), "file": ("model.zip", b"PK\x03\x04model\r\n")}
    response = _post(platform_server, UPLOAD, files=files, headers={**_auth(platform_server), "Uid": "model-7"})
    assert response.status_code == 200
    assert stored_path(platform_server.data_dir, "model", "model-7").read_bytes() == b"PK\x03\x04model\r\n"


@pytest.mark.parametrize(
    ("files", "uid", "status"),
    [
        ({"file": ("model.zip", b"x")}, None, 400),
        ({"file": ("model.zip", b"x")}, "../escape", 400),
        ({"other": ("model.zip", b"x")}, "model-7", 400),
    ],
)
def test_upload_refusals(platform_server, files, uid, status):
    headers = _auth(platform_server)
    if uid is not None:
        headers["Uid"] = uid
    response = _post(platform_server, UPLOAD, files=files, headers=headers)
    assert response.status_code == status
    assert not (platform_server.data_dir / "model").exists()


def test_accuracy_is_recorded(platform_server):
    body = {"model_uid": "m-1", "model_accuracy": 1}
    response = _post(platform_server, ACCURACY_PATH, json=body, headers=_auth(platform_server))
    assert response.status_code == 200
    record = json.loads((platform_server.data_dir / "model_metadata" / "m-1.json").read_text())
    assert record == {"model_uid": "m-1", "model_accuracy": 1.0}


@pytest.mark.parametrize("accuracy", ["0.9", None, True])
def test_accuracy_must_be_a_number(platform_server, accuracy):
    body = {"model_uid": "m-1", "model_accuracy": accuracy}
    response = _post(platform_server, ACCURACY_PATH, json=body, headers=_auth(platform_server))
    assert response.status_code == 400


def test_server_and_client_agree_on_the_kinds():
    assert dict(FILE_KINDS) == dict(CLIENT_FILE_KINDS)


def test_stop_releases_the_port(tmp_path):
    with PlatformServer(tmp_path, {"a": "b"}) as server:
        port = server.port
        assert server.url == f"http://127.0.0.1:{port}"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", port))
    with pytest.raises(RuntimeError, match="not running"):
        _ = server.url


def test_seed_dataset_copies_the_zip(tmp_path, platform_dataset_zip):
    dest = seed_dataset(tmp_path / "data", "ds-1", platform_dataset_zip)
    assert dest == tmp_path / "data" / "training_dataset" / "ds-1"
    assert dest.read_bytes() == platform_dataset_zip.read_bytes()


def test_seed_dataset_refuses_a_bad_uid(tmp_path, platform_dataset_zip):
    with pytest.raises(PlatformError, match="uid '../x' is not valid"):
        seed_dataset(tmp_path, "../x", platform_dataset_zip)


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_load_accounts(tmp_path, suffix):
    path = tmp_path / f"accounts{suffix}"
    path.write_text(json.dumps({"accounts": {"dev": "s3cret"}}))
    assert load_accounts(path) == {"dev": "s3cret"}


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("accounts: [a, b]", "expected a mapping 'accounts'"),
        ("accounts: {dev: ''}", r"accounts\.dev: .*non-empty"),
        ("accounts: {dev: [", "not valid YAML"),
    ],
)
def test_load_accounts_errors_name_the_file(tmp_path, text, match):
    path = tmp_path / "accounts.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match) as caught:
        load_accounts(path)
    assert str(path) in str(caught.value)


def test_load_accounts_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read the accounts file"):
        load_accounts(tmp_path / "missing.yaml")


def test_serve_forever_needs_an_account(tmp_path):
    with pytest.raises(ConfigError, match="at least one account"):
        serve_forever("127.0.0.1", 0, tmp_path, {})
