"""The local record of fingerprints that passed pip check: read strictly, written atomically, bounded."""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from buildtool.check import pip_check_cache
from buildtool.check.pip_check_cache import MAX_BYTES, MAX_ENTRIES, PipCheckCache

from ..helpers import fuzz_examples

A, B, C = "a" * 64, "b" * 64, "0123456789abcdef" * 4


def write(path: Path, data: bytes | str, mode: int = 0o644) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    path.chmod(mode)
    return path


def test_the_path_follows_xdg_and_falls_back_to_home(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert pip_check_cache.default_path({"XDG_CACHE_HOME": "/x/cache"}) == Path("/x/cache/buildtool/pip-check.json")
    # A relative XDG_CACHE_HOME is invalid (XDG spec) and ignored.
    for environ in ({"XDG_CACHE_HOME": "rel/cache"}, {"XDG_CACHE_HOME": ""}, {}):
        assert pip_check_cache.default_path(environ) == tmp_path / "home" / ".cache" / "buildtool" / "pip-check.json"


def test_record_then_known_and_the_file_is_canonical(tmp_path):
    path = tmp_path / "cache" / "buildtool" / "pip-check.json"
    cache = PipCheckCache(path)
    assert cache.known() == frozenset()
    cache.record(A)
    cache.record(B)
    cache.record(A)  # already there: no duplicate, no reorder
    assert cache.known() == {A, B}
    assert json.loads(path.read_text()) == {"version": 1, "fingerprints": [A, B]}
    assert path.stat().st_mode & 0o022 == 0
    assert [p.name for p in path.parent.iterdir()] == ["pip-check.json"]  # no temp file left (fsutil)


def test_record_keeps_only_the_newest_entries(tmp_path):
    path = tmp_path / "pip-check.json"
    many = [f"{i:064x}" for i in range(MAX_ENTRIES)]
    write(path, pip_check_cache.render(many))
    cache = PipCheckCache(path)
    cache.record(C)
    entries = json.loads(path.read_text())["fingerprints"]
    assert len(entries) == MAX_ENTRIES and entries[-1] == C and many[0] not in entries and many[1] in entries
    assert path.stat().st_size < MAX_BYTES


def test_a_value_that_is_not_a_fingerprint_is_never_recorded(tmp_path):
    path = tmp_path / "pip-check.json"
    cache = PipCheckCache(path)
    for bad in ("", "A" * 64, "a" * 63, "a" * 65, "g" * 64, "a" * 64 + "\n"):
        cache.record(bad)
    assert not path.exists()


def test_no_home_means_no_cache(tmp_path):
    cache = PipCheckCache(None)
    cache.record(A)
    assert cache.known() == frozenset()


def test_recording_from_parallel_threads_loses_nothing(tmp_path):
    path = tmp_path / "pip-check.json"
    cache = PipCheckCache(path)
    prints = [f"{i:064x}" for i in range(16)]
    threads = [threading.Thread(target=cache.record, args=(p,)) for p in prints]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert cache.known() == set(prints)


def test_an_unwritable_cache_does_not_fail_the_check(tmp_path, caplog):
    if os.geteuid() == 0:
        # root writes anywhere: a file where the cache's folder should be blocks it for root too
        blocker = write(tmp_path / "blocker", "")
        path = blocker / "pip-check.json"
    else:
        (tmp_path / "ro").mkdir(mode=0o555)
        path = tmp_path / "ro" / "pip-check.json"
    cache = PipCheckCache(path)
    with caplog.at_level(logging.WARNING):
        cache.record(A)
    assert "cannot write the pip check cache" in caplog.text
    assert cache.known() == frozenset()


# A hostile or corrupt cache is ignored whole: nothing it lists is trusted, and the next successful check
# replaces it. Each row: what the file holds, and the reason logged.
HOSTILE = [
    ("not-json", b"{not json", "not JSON"),
    ("not-utf8", b"\xff\xfe{}", "not JSON"),
    ("empty", b"", "not JSON"),
    ("deep-nesting", b"[" * 50_000 + b"]" * 50_000, "larger than"),
    ("deep-nesting-under-cap", b"[" * 30_000 + b"]" * 30_000, "not JSON"),
    ("too-large", json.dumps({"version": 1, "fingerprints": [A]}).encode() + b" " * MAX_BYTES, "larger than"),
    ("a-list", json.dumps([A]).encode(), "exactly"),
    ("extra-key", json.dumps({"version": 1, "fingerprints": [A], "x": 1}).encode(), "exactly"),
    ("no-version", json.dumps({"fingerprints": [A]}).encode(), "exactly"),
    ("version-2", json.dumps({"version": 2, "fingerprints": [A]}).encode(), "version is not 1"),
    ("version-true", json.dumps({"version": True, "fingerprints": [A]}).encode(), "version is not 1"),
    ("version-string", json.dumps({"version": "1", "fingerprints": [A]}).encode(), "version is not 1"),
    ("fingerprints-dict", json.dumps({"version": 1, "fingerprints": {A: 1}}).encode(), "not a list"),
    (
        "too-many",
        json.dumps({"version": 1, "fingerprints": [f"{i:064x}" for i in range(MAX_ENTRIES + 1)]}).encode(),
        "at most",
    ),
    ("upper-case", json.dumps({"version": 1, "fingerprints": [A.upper()]}).encode(), "hex"),
    ("short", json.dumps({"version": 1, "fingerprints": [A, "abc"]}).encode(), "hex"),
    ("newline", json.dumps({"version": 1, "fingerprints": [A + "\n"]}).encode(), "hex"),
    ("number", json.dumps({"version": 1, "fingerprints": [A, 7]}).encode(), "hex"),
    ("duplicate", json.dumps({"version": 1, "fingerprints": [A, A]}).encode(), "distinct"),
]


@pytest.mark.parametrize("data, reason", [row[1:] for row in HOSTILE], ids=[row[0] for row in HOSTILE])
def test_a_malformed_cache_is_ignored_and_rewritten_by_the_next_record(tmp_path, caplog, data, reason):
    path = write(tmp_path / "pip-check.json", data)
    cache = PipCheckCache(path)
    with caplog.at_level(logging.WARNING):
        assert cache.known() == frozenset()
        assert cache.known() == frozenset()
    assert reason in caplog.text and "pip check runs in every image" in caplog.text
    assert caplog.text.count("ignoring the pip check cache") == 1  # once per run, not per image
    cache.record(B)
    assert json.loads(path.read_text()) == {"version": 1, "fingerprints": [B]}


def test_a_cache_others_can_write_is_ignored(tmp_path, caplog):
    path = write(tmp_path / "pip-check.json", pip_check_cache.render([A]), mode=0o666)
    with caplog.at_level(logging.WARNING):
        assert PipCheckCache(path).known() == frozenset()
    assert "writable by others" in caplog.text
    path.chmod(0o664)
    assert PipCheckCache(path).known() == frozenset()
    path.chmod(0o644)
    assert PipCheckCache(path).known() == {A}


def test_a_symlinked_or_special_cache_is_ignored(tmp_path, caplog):
    target = write(tmp_path / "elsewhere.json", pip_check_cache.render([A]))
    link = tmp_path / "pip-check.json"
    link.symlink_to(target)
    with caplog.at_level(logging.WARNING):
        assert PipCheckCache(link).known() == frozenset()
    folder = tmp_path / "dir" / "pip-check.json"
    folder.mkdir(parents=True)
    assert PipCheckCache(folder).known() == frozenset()
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    assert PipCheckCache(fifo).known() == frozenset()  # and does not block on open
    assert "a symbolic link" in caplog.text and caplog.text.count("not a regular file") == 2


def test_a_cache_of_another_user_is_ignored(tmp_path, caplog):
    if os.geteuid() != 0:
        pytest.skip("only root can give a file to another user")
    path = write(tmp_path / "pip-check.json", pip_check_cache.render([A]))
    os.chown(path, 12345, -1)
    with caplog.at_level(logging.WARNING):
        assert PipCheckCache(path).known() == frozenset()
    assert "owned by another user" in caplog.text


@settings(max_examples=fuzz_examples(300), deadline=None)
@given(
    st.one_of(
        st.binary(max_size=300),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=70) | st.sampled_from([A, B, 1, "version"]),
            lambda inner: (
                st.lists(inner, max_size=5)
                | st.dictionaries(st.sampled_from(["version", "fingerprints", "x"]), inner, max_size=3)
            ),
            max_leaves=20,
        ).map(lambda value: json.dumps(value).encode()),
    )
)
def test_parse_returns_fingerprints_or_refuses(data):
    try:
        entries = pip_check_cache.parse(data)
    except ValueError:
        return
    assert all(pip_check_cache.is_fingerprint(e) for e in entries) and len(entries) <= MAX_ENTRIES
