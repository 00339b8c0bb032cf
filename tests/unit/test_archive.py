"""platform_client.archive: refusing unsafe zips, building deterministic ones."""

from __future__ import annotations

import os
import struct
import zipfile
from pathlib import Path

import pytest

from platform_client.archive import make_zip, safe_extract
from platform_client.errors import ArchiveError


def _zip(path: Path, members: list[tuple[str | zipfile.ZipInfo, bytes]]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members:
            archive.writestr(name, data)
    return path


def _symlink_member(name: str, target: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = 0o120777 << 16
    return info


def _tree(directory: Path) -> list[str]:
    return sorted(p.relative_to(directory).as_posix() for p in directory.rglob("*"))


def test_extracts_a_well_formed_zip(tmp_path):
    zip_path = _zip(tmp_path / "ok.zip", [("training_dataset.npy", b"npy"), ("sub/dir/a.txt", b"a"), ("empty/", b"")])

    written = safe_extract(zip_path, tmp_path / "out")

    assert written == [tmp_path / "out" / "training_dataset.npy", tmp_path / "out" / "sub" / "dir" / "a.txt"]
    assert (tmp_path / "out" / "sub" / "dir" / "a.txt").read_bytes() == b"a"
    assert _tree(tmp_path / "out") == ["empty", "sub", "sub/dir", "sub/dir/a.txt", "training_dataset.npy"]


@pytest.mark.parametrize(
    ("member", "reason"),
    [
        ("../evil.txt", "'..' component"),
        ("ok/../../evil.txt", "'..' component"),
        ("..\\evil.txt", "'..' component"),
        ("/etc/evil.txt", "absolute path"),
        ("\\evil.txt", "absolute path"),
        ("C:/evil.txt", "drive letter"),
        ("c:evil.txt", "drive letter"),
    ],
)
def test_refuses_members_that_leave_the_folder(tmp_path, member, reason):
    zip_path = _zip(tmp_path / "bad.zip", [("fine.txt", b"fine"), (member, b"evil")])
    dest = tmp_path / "out"

    with pytest.raises(ArchiveError, match=reason) as caught:
        safe_extract(zip_path, dest)

    assert repr(member) in str(caught.value)
    assert not dest.exists()  # nothing written, not even the fine member
    assert not (tmp_path / "evil.txt").exists()


def test_refuses_a_symlink_member(tmp_path):
    zip_path = _zip(tmp_path / "link.zip", [(_symlink_member("link", "/etc/passwd"), b"/etc/passwd")])

    with pytest.raises(ArchiveError, match="member 'link' is a symbolic link"):
        safe_extract(zip_path, tmp_path / "out")


def test_refuses_to_write_through_a_link_already_in_dest(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "sub").symlink_to(outside)
    zip_path = _zip(tmp_path / "ok.zip", [("sub/x.txt", b"x")])

    with pytest.raises(ArchiveError, match="member 'sub/x.txt' would be written outside"):
        safe_extract(zip_path, dest)

    assert list(outside.iterdir()) == []


def test_refuses_too_many_members(tmp_path):
    zip_path = _zip(tmp_path / "many.zip", [(f"f{i}", b"") for i in range(4)])

    with pytest.raises(ArchiveError, match="4 members, more than the limit of 3"):
        safe_extract(zip_path, tmp_path / "out", max_members=3)


def test_refuses_too_many_declared_bytes(tmp_path):
    zip_path = _zip(tmp_path / "big.zip", [("a", b"0" * 60), ("b", b"0" * 60)])

    expected = "member 'b' brings the declared size to 120 bytes, more than the limit of 100"
    with pytest.raises(ArchiveError, match=expected):
        safe_extract(zip_path, tmp_path / "out", max_total_bytes=100)


def test_refuses_a_member_that_holds_more_than_it_declares(tmp_path):
    zip_path = tmp_path / "liar.zip"
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("liar", b"x" * 1000)
    _patch_sizes(zip_path, declared=10)
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "keep.txt").write_text("keep")

    with pytest.raises(ArchiveError, match="member 'liar'"):
        safe_extract(zip_path, dest, max_total_bytes=100)

    assert _tree(dest) == ["keep.txt"]  # no partial member, no staging folder left


def test_refuses_duplicate_members(tmp_path):
    with pytest.warns(UserWarning, match="Duplicate name"):
        zip_path = _zip(tmp_path / "dup.zip", [("a.txt", b"1"), ("a.txt", b"2")])

    with pytest.raises(ArchiveError, match="appears more than once"):
        safe_extract(zip_path, tmp_path / "out")


def test_refuses_a_member_under_a_file(tmp_path):
    zip_path = _zip(tmp_path / "clash.zip", [("a", b"file"), ("a/b", b"under it")])

    with pytest.raises(ArchiveError, match="member 'a/b' lies under 'a', a file in the archive"):
        safe_extract(zip_path, tmp_path / "out")


@pytest.mark.parametrize("damage", ["garbage", "truncated", "flipped"])
def test_a_corrupt_zip_is_an_archive_error(tmp_path, damage):
    zip_path = _zip(tmp_path / "c.zip", [("data.bin", os.urandom(4096))])
    data = bytearray(zip_path.read_bytes())
    if damage == "garbage":
        data = bytearray(b"this is not a zip file at all")
    elif damage == "truncated":
        data = data[: len(data) // 2]
    else:
        data[60] ^= 0xFF  # inside the member's compressed bytes
    zip_path.write_bytes(bytes(data))
    dest = tmp_path / "out"

    with pytest.raises(ArchiveError, match="c.zip"):
        safe_extract(zip_path, dest)

    assert not dest.exists() or _tree(dest) == []


def _patch_sizes(zip_path: Path, *, declared: int) -> None:
    """Rewrite the uncompressed and compressed sizes of the only member in both headers."""
    data = bytearray(zip_path.read_bytes())
    local = data.find(b"PK\x03\x04")
    central = data.find(b"PK\x01\x02")
    struct.pack_into("<II", data, local + 18, declared, declared)
    struct.pack_into("<II", data, central + 20, declared, declared)
    zip_path.write_bytes(bytes(data))


# -- make_zip ------------------------------------------------------------------


def _source(directory: Path) -> Path:
    (directory / "model").mkdir(parents=True)
    (directory / "model" / "model.h5").write_bytes(b"weights" * 1000)
    (directory / "b.txt").write_text("b")
    (directory / "a.txt").write_text("a")
    (directory / "empty").mkdir()
    return directory


def test_make_zip_is_deterministic(tmp_path):
    first = _source(tmp_path / "one")
    second = _source(tmp_path / "two")
    for i, path in enumerate(sorted(second.rglob("*"))):
        os.utime(path, (1_600_000_000 + i, 1_700_000_000 + i * 7))
        path.chmod(0o700 if path.is_dir() else 0o600)

    one = make_zip(first, tmp_path / "one.zip").read_bytes()
    again = make_zip(first, tmp_path / "again.zip").read_bytes()
    two = make_zip(second, tmp_path / "two.zip").read_bytes()

    assert one == again == two


def test_make_zip_entries(tmp_path):
    zip_path = make_zip(_source(tmp_path / "src"), tmp_path / "out.zip")

    with zipfile.ZipFile(zip_path) as archive:
        infos = archive.infolist()
        assert [i.filename for i in infos] == ["a.txt", "b.txt", "empty/", "model/model.h5"]
        assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}
        assert [i.external_attr >> 16 for i in infos] == [0o100644, 0o100644, 0o040755, 0o100644]
    assert safe_extract(zip_path, tmp_path / "back")[-1].read_bytes() == b"weights" * 1000


def test_make_zip_leaves_out_the_zip_itself(tmp_path):
    source = _source(tmp_path / "src")
    zip_path = make_zip(source, source / "self.zip")
    make_zip(source, zip_path)  # a second run must not include the first result

    with zipfile.ZipFile(zip_path) as archive:
        assert "self.zip" not in archive.namelist()
    assert [p.name for p in source.iterdir() if p.name.endswith(".part")] == []


def test_make_zip_refuses_links(tmp_path):
    source = _source(tmp_path / "src")
    (source / "link").symlink_to(source / "a.txt")

    with pytest.raises(ArchiveError, match="symbolic link"):
        make_zip(source, tmp_path / "out.zip")

    assert not (tmp_path / "out.zip").exists()
