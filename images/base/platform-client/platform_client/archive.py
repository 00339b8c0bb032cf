"""Zip archives: extraction that refuses unsafe members, and deterministic creation."""

from __future__ import annotations

import os
import re
import shutil
import stat
import tempfile
import zipfile
import zlib
from contextlib import suppress
from pathlib import Path
from typing import Union

from .errors import ArchiveError

__all__ = ["DEFAULT_MAX_MEMBERS", "DEFAULT_MAX_TOTAL_BYTES", "MAX_MEMBER_DEPTH", "make_zip", "safe_extract"]

DEFAULT_MAX_TOTAL_BYTES = 4 * 1024**3
DEFAULT_MAX_MEMBERS = 10_000
#: Path components a member may have: deeper names are refused before the file
#: system (PATH_MAX) or a recursive mkdir (RecursionError) would fail on them.
MAX_MEMBER_DEPTH = 32
#: Bytes in one component: the common file-system limit (NAME_MAX).
MAX_COMPONENT_BYTES = 255
#: Bytes in a whole member name, well under PATH_MAX (4096) with room for the target folder.
MAX_NAME_BYTES = 1024

#: Timestamp of every member written by make_zip (the earliest a zip can hold).
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
_FILE_MODE = 0o100644
_DIR_MODE = 0o040755
_MSDOS_DIRECTORY = 0x10
_CHUNK_BYTES = 1024 * 1024
_DRIVE = re.compile(r"^[A-Za-z]:")
# What zipfile and its decompressors raise on damaged data.
_CORRUPT = (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError, OSError)

PathLike = Union[str, "os.PathLike[str]"]


def safe_extract(
    zip_path: PathLike,
    dest: PathLike,
    *,
    max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES,
    max_members: int = DEFAULT_MAX_MEMBERS,
) -> list[Path]:
    """Extract `zip_path` into `dest` (created if missing); return the files written.

    Every member is checked before anything is written: absolute paths, drive
    letters, ``..`` components, links and other special files, encrypted or
    duplicate members, more than `max_members` members, or more than
    `max_total_bytes` declared in all raise `ArchiveError` naming the member.
    The bytes are counted again while extracting, so a member cannot grow past
    what it declares. Members are extracted into a staging folder inside
    `dest` first, so a corrupt member leaves `dest` as it was.
    """
    zip_path = Path(zip_path)
    dest = Path(dest)
    try:
        archive = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, EOFError, ValueError) as exc:
        raise ArchiveError(f"{zip_path} is not a valid zip archive: {exc}") from exc
    with archive:
        members = _plan(zip_path, archive.infolist(), max_total_bytes, max_members)
        dest.mkdir(parents=True, exist_ok=True)
        root = dest.resolve()
        staging = Path(tempfile.mkdtemp(prefix=".extract-", dir=root))
        try:
            _extract_to(archive, zip_path, members, staging, max_total_bytes)
            return _move_into(members, staging, root, dest)
        finally:
            shutil.rmtree(staging, ignore_errors=True)


def make_zip(src_dir: PathLike, zip_path: PathLike) -> Path:
    """Zip the contents of `src_dir` into `zip_path`; return `zip_path`.

    The result depends only on the relative paths and bytes of the files:
    entries sorted by path, every timestamp 1980-01-01 00:00, files mode 0644,
    empty folders mode 0755, deflated at zlib's default level. Links and special files are
    refused (`ArchiveError`). The archive is written to a temporary file and
    renamed into place. `zip_path` may lie inside `src_dir`; it is left out.
    """
    src = Path(src_dir)
    zip_path = Path(zip_path)
    if not src.is_dir():
        raise NotADirectoryError(f"cannot zip {src}: not a directory")
    entries = sorted(_collect(src, "", zip_path.resolve()), key=lambda entry: entry[0])
    zip_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{zip_path.name}.", suffix=".part", dir=zip_path.parent)
    try:
        with os.fdopen(fd, "wb") as raw, zipfile.ZipFile(raw, "w", zipfile.ZIP_DEFLATED) as archive:
            for arcname, path in entries:
                _write_entry(archive, arcname, path)
        os.chmod(tmp_name, 0o644)
        os.replace(tmp_name, zip_path)
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    return zip_path


# -- extraction ----------------------------------------------------------------


def _plan(
    zip_path: Path, infos: list[zipfile.ZipInfo], max_total_bytes: int, max_members: int
) -> list[tuple[zipfile.ZipInfo, tuple[str, ...]]]:
    if len(infos) > max_members:
        raise ArchiveError(f"{zip_path} has {len(infos)} members, more than the limit of {max_members}")
    planned = []
    seen = set()
    declared = 0
    for info in infos:
        parts = _member_parts(zip_path, info)
        _check_member_type(zip_path, info)
        key = "/".join(parts)
        if key in seen:
            raise ArchiveError(f"{zip_path}: member {_short(info.filename)} appears more than once")
        seen.add(key)
        declared += info.file_size
        if declared > max_total_bytes:
            raise ArchiveError(
                f"{zip_path}: member {_short(info.filename)} brings the declared size to {declared} bytes, "
                f"more than the limit of {max_total_bytes}"
            )
        planned.append((info, parts))
    files = {"/".join(parts) for info, parts in planned if not info.is_dir()}
    for info, parts in planned:
        for depth in range(1, len(parts)):
            folder = "/".join(parts[:depth])
            if folder in files:
                raise ArchiveError(
                    f"{zip_path}: member {_short(info.filename)} lies under {folder!r}, a file in the archive"
                )
    return planned


def _member_parts(zip_path: Path, info: zipfile.ZipInfo) -> tuple[str, ...]:
    name = info.filename
    normalized = name.replace("\\", "/")
    if normalized.startswith("/"):
        raise ArchiveError(f"{zip_path}: member {_short(name)} has an absolute path")
    if _DRIVE.match(normalized):
        raise ArchiveError(f"{zip_path}: member {_short(name)} starts with a drive letter")
    parts = tuple(part for part in normalized.split("/") if part not in ("", "."))
    if ".." in parts:
        raise ArchiveError(f"{zip_path}: member {_short(name)} has a '..' component")
    if not parts:
        raise ArchiveError(f"{zip_path}: member {name!r} has an empty path")
    if len(parts) > MAX_MEMBER_DEPTH:
        raise ArchiveError(
            f"{zip_path}: member {_short(name)} has {len(parts)} path components, "
            f"more than the limit of {MAX_MEMBER_DEPTH}"
        )
    if len("/".join(parts).encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES:
        raise ArchiveError(f"{zip_path}: member {_short(name)} is a path longer than {MAX_NAME_BYTES} bytes")
    for part in parts:
        if len(part.encode("utf-8", "surrogateescape")) > MAX_COMPONENT_BYTES:
            raise ArchiveError(
                f"{zip_path}: member {_short(name)} has a name part longer than {MAX_COMPONENT_BYTES} bytes"
            )
    return parts


def _short(name: str) -> str:
    """A member name for a message: long hostile names are cut."""
    text = repr(name)
    return text if len(text) <= 120 else f"{text[:100]}...{text[-10:]} ({len(name)} characters)"


def _check_member_type(zip_path: Path, info: zipfile.ZipInfo) -> None:
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        raise ArchiveError(f"{zip_path}: member {_short(info.filename)} is a symbolic link")
    if stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):
        raise ArchiveError(f"{zip_path}: member {_short(info.filename)} is a special file (mode {mode:o})")
    if info.flag_bits & 0x1:
        raise ArchiveError(f"{zip_path}: member {_short(info.filename)} is encrypted")


def _extract_to(
    archive: zipfile.ZipFile,
    zip_path: Path,
    members: list[tuple[zipfile.ZipInfo, tuple[str, ...]]],
    staging: Path,
    max_total_bytes: int,
) -> None:
    total = 0
    for info, parts in members:
        try:
            total = _extract_member(archive, zip_path, info, staging.joinpath(*parts), total, max_total_bytes)
        except ArchiveError:
            raise
        except OSError as exc:  # a name the file system refuses, a full disk
            reason = exc.strerror or str(exc)
            raise ArchiveError(f"{zip_path}: member {_short(info.filename)} cannot be written: {reason}") from exc


def _extract_member(
    archive: zipfile.ZipFile, zip_path: Path, info: zipfile.ZipInfo, target: Path, total: int, max_total_bytes: int
) -> int:
    """Extract one member to `target`; return the running total of bytes extracted."""
    if info.is_dir():
        target.mkdir(parents=True, exist_ok=True)
        return total
    target.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with open(target, "xb") as out:
        try:
            source = archive.open(info)
        except _CORRUPT as exc:
            raise ArchiveError(f"{zip_path}: member {_short(info.filename)} cannot be read: {exc}") from exc
        with source:
            while True:
                try:
                    chunk = source.read(_CHUNK_BYTES)
                except _CORRUPT as exc:
                    raise ArchiveError(f"{zip_path}: member {_short(info.filename)} is corrupt: {exc}") from exc
                if not chunk:
                    break
                written += len(chunk)
                total += len(chunk)
                if written > info.file_size:
                    raise ArchiveError(
                        f"{zip_path}: member {_short(info.filename)} holds more than the "
                        f"{info.file_size} bytes it declares"
                    )
                if total > max_total_bytes:
                    raise ArchiveError(
                        f"{zip_path}: member {_short(info.filename)} brings the extracted size past the limit "
                        f"of {max_total_bytes} bytes"
                    )
                out.write(chunk)
    if written != info.file_size:
        raise ArchiveError(
            f"{zip_path}: member {_short(info.filename)} holds {written} bytes, not the {info.file_size} it declares"
        )
    return total


def _move_into(
    members: list[tuple[zipfile.ZipInfo, tuple[str, ...]]], staging: Path, root: Path, dest: Path
) -> list[Path]:
    written = []
    for info, parts in members:
        target = root.joinpath(*parts)
        if info.is_dir():
            _make_dir_inside(root, target, info)
            continue
        _make_dir_inside(root, target.parent, info)
        os.replace(staging.joinpath(*parts), target)
        written.append(dest.joinpath(*parts))
    return written


def _make_dir_inside(root: Path, directory: Path, info: zipfile.ZipInfo) -> None:
    """Create `directory`, unless a link already in `dest` leads it outside `root`."""
    existing = directory
    while not existing.exists() and existing != root:
        existing = existing.parent
    _check_inside(root, existing, info)
    directory.mkdir(parents=True, exist_ok=True)
    _check_inside(root, directory, info)


def _check_inside(root: Path, path: Path, info: zipfile.ZipInfo) -> None:
    resolved = path.resolve()
    if resolved != root and root not in resolved.parents:
        raise ArchiveError(f"member {_short(info.filename)} would be written outside {root} (through {path})")


# -- creation ------------------------------------------------------------------


def _collect(directory: Path, prefix: str, skip: Path) -> list[tuple[str, Path | None]]:
    """(archive name, path) of every file, and (name + '/', None) of every empty folder."""
    entries: list[tuple[str, Path | None]] = []
    children = sorted(os.scandir(directory), key=lambda entry: entry.name)
    for child in children:
        path = Path(child.path)
        arcname = prefix + child.name
        if child.is_symlink():
            raise ArchiveError(f"cannot zip {path}: it is a symbolic link (only files and folders are stored)")
        if child.is_dir():
            entries.extend(_collect(path, arcname + "/", skip))
        elif child.is_file():
            if path.resolve() != skip:
                entries.append((arcname, path))
        else:
            raise ArchiveError(f"cannot zip {path}: it is not a regular file or folder")
    if not children and prefix:
        entries.append((prefix, None))
    return entries


def _write_entry(archive: zipfile.ZipFile, arcname: str, path: Path | None) -> None:
    info = zipfile.ZipInfo(arcname, date_time=ZIP_EPOCH)
    info.create_system = 3  # Unix, so the mode bits below are read back
    if path is None:
        info.external_attr = (_DIR_MODE << 16) | _MSDOS_DIRECTORY
        info.compress_type = zipfile.ZIP_STORED
        archive.writestr(info, b"")
        return
    info.external_attr = _FILE_MODE << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    with open(path, "rb") as source:
        info.file_size = os.fstat(source.fileno()).st_size
        with archive.open(info, "w") as out:
            shutil.copyfileobj(source, out, _CHUNK_BYTES)
