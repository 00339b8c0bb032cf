"""Zip member names the file system cannot hold: refused with ArchiveError before anything is written."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from platform_client.archive import MAX_MEMBER_DEPTH, safe_extract
from platform_client.errors import ArchiveError

# (id, member name, fragment of the error)
CASES = [
    ("name-300-characters", "a" * 300, "longer than 255 bytes"),
    ("folder-300-characters", "d" * 300 + "/file.txt", "longer than 255 bytes"),
    ("name-256-bytes-of-utf8", "é" * 128, "longer than 255 bytes"),
    ("2000-components", "/".join(["d"] * 2000) + "/file.txt", "2001 path components"),
    ("33-components", "/".join(["d"] * MAX_MEMBER_DEPTH) + "/file.txt", f"more than the limit of {MAX_MEMBER_DEPTH}"),
    ("path-over-1024-bytes", "/".join(["d" * 200] * 6), "longer than 1024 bytes"),
    ("parent-hidden-in-depth", "/".join(["d"] * 10) + "/../" * 20 + "evil", "'..' component"),
]


def _zip(path: Path, name: str) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("fine.txt", b"fine")
        archive.writestr(name, b"payload")
    return path


@pytest.mark.parametrize(("name", "fragment"), [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_unholdable_member_names_are_refused(tmp_path, name, fragment):
    zip_path = _zip(tmp_path / "bad.zip", name)
    dest = tmp_path / "out"

    with pytest.raises(ArchiveError, match=fragment) as caught:
        safe_extract(zip_path, dest)

    message = str(caught.value)
    assert str(zip_path) in message and "\n" not in message
    assert len(message) < 400  # a hostile name is cut, not repeated in full
    assert not dest.exists() or list(dest.iterdir()) == []  # nothing written, no staging folder left


def test_the_deepest_allowed_member_extracts(tmp_path):
    name = "/".join(["d"] * (MAX_MEMBER_DEPTH - 1)) + "/" + "f" * 255
    zip_path = _zip(tmp_path / "ok.zip", name)

    written = safe_extract(zip_path, tmp_path / "out")

    assert (tmp_path / "out" / name).read_bytes() == b"payload"
    assert len(written) == 2


def test_a_member_the_disk_refuses_is_an_archive_error(tmp_path):
    # 31 folders of 20 bytes fit every limit of the archive, but not PATH_MAX (4096) under a deep target.
    name = "/".join(["d" * 20] * 31) + "/file"
    zip_path = _zip(tmp_path / "deep.zip", name)
    dest = tmp_path.joinpath(*(["x" * 250] * 14))

    with pytest.raises(ArchiveError, match="cannot be written"):
        safe_extract(zip_path, dest)
