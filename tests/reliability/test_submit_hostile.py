"""Hostile and broken KFP servers against `buildtool submit`: one row per case.

Each row scripts the fake KFP server's first answers (tests/fake_kfp.py `script`): a server that echoes the
credential, one that sends control characters, a megabyte, an ingress's HTML page, the wrong JSON, a redirect,
a 409 for a name it then does not list. After every row: the exit code, one `buildtool: error:` line holding
the fragment, no traceback, the token shown nowhere (as sent, escaped or URL-encoded), nothing uploaded, and
pipeline.yaml and image_map.yaml byte-identical.
"""

from __future__ import annotations

import json
import time
import urllib.parse
from typing import Any

import pytest

from ..submit_fixtures import PARAMS, TOKEN, Submitter


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> tuple[int, bytes, None, dict[str, str]]:
    return status, json.dumps(body).encode(), None, dict(headers or {})


def _raw(status: int, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, bytes, None, dict[str, str]]:
    return status, body, None, dict(headers or {})


EMPTY = _raw(200, b"{}")

ROWS = [
    # (id, script, fragment)
    (
        "401-echoes-the-token",
        [_json(401, {"error": f"token {TOKEN} expired", "code": 16})],
        "(not authenticated; sent the bearer token from $KFP_TOKEN): token *** expired",
    ),
    (
        "500-echoes-the-token-url-encoded",
        [_json(500, {"error": f"got {urllib.parse.quote(TOKEN + '/x', safe='')}"})] * 4,
        "HTTP 500: got ***",
    ),
    ("400-echoes-the-token-escaped", [_json(400, {"error": f"bad\u2028 {TOKEN}"})], "bad\\u2028 ***"),
    (
        "newline-and-terminal-escape-in-the-message",
        [_json(400, {"error": "no\n\x1b[31mbuildtool: ok"})],
        "no\\n\\x1b[31mbuildtool: ok",
    ),
    ("a-megabyte-message", [_json(400, {"error": "x" * 1_000_000})], "xxx..."),
    (
        "an-ingress-html-page-with-200",
        [_raw(200, b"<html><body>Sign in</body></html>", {"Content-Type": "text/html"})],
        "the answer is not the KFP v1 API's",
    ),
    ("a-list-that-is-a-string", [_json(200, {"pipelines": "abc"})], "not an identifier"),
    ("a-pipeline-without-id", [_json(200, {"pipelines": [{"name": "pipeline"}]})], "a pipeline's id as None"),
    (
        "a-list-of-2000",
        [_json(200, {"pipelines": [{"id": str(n), "name": f"p{n}"} for n in range(2000)]})],
        "not a list of at most 1000",
    ),
    (
        "two-pipelines-of-the-name",
        [_json(200, {"pipelines": [{"id": "a", "name": "pipeline"}, {"id": "b", "name": "pipeline"}]})],
        "2 pipelines are named 'pipeline'",
    ),
    (
        "a-redirect-to-another-host",
        [_raw(302, b"", {"Location": "https://evil.example.com/dex/auth?x=1"})],
        "redirect to https://evil.example.com/dex/auth?x=1, not followed",
    ),
    (
        "a-409-then-nothing-listed",
        [EMPTY, _json(409, {"error": "exists"}), EMPTY],
        "answered 409 (already exists) for pipeline 'pipeline', but lists none",
    ),
    ("a-404", [_json(404, {"error": "Not Found"})], "HTTP 404 (not found): Not Found; is --host the KFP API"),
    ("an-empty-200", [_raw(200, b"")], "the answer is not the KFP v1 API's"),
]


@pytest.mark.parametrize("script, fragment", [row[1:] for row in ROWS], ids=[row[0] for row in ROWS])
def test_a_hostile_server(submit: Submitter, monkeypatch: pytest.MonkeyPatch, script: list[Any], fragment: str) -> None:
    monkeypatch.setenv("KFP_TOKEN", TOKEN)
    files = {name: (submit.root / name).read_bytes() for name in ("pipeline.yaml", "image_map.yaml")}
    submit.kfp.script = list(script)
    started = time.monotonic()
    code, out, err = submit("--token-env", "KFP_TOKEN")
    assert code == 16, err
    assert err.startswith("buildtool: error: ") and err.count("\n") == 1 and fragment in err, err
    assert len(err) < 1200
    for shown in (TOKEN, urllib.parse.quote(TOKEN, safe="")):
        assert shown not in out + err
    assert submit.kfp.uploads == []
    assert {name: (submit.root / name).read_bytes() for name in files} == files
    assert time.monotonic() - started < 20


def test_a_run_state_with_a_forged_line_is_shown_escaped(submit: Submitter) -> None:
    submit.kfp.run_states = ["Running\nbuildtool: run succeeded"]
    code, out, err = submit("--run", "--wait", "--timeout", "0.3", *PARAMS)
    assert code == 18
    assert "Running\\nbuildtool: run succeeded" in out and "\nbuildtool: run succeeded" not in out
