"""The work folder of a local run: checked empty before the run, a folder per step output created inside it,
and the files the steps wrote read back.

A step's outputs are written under `workdir/<node path>/<output>/`, that folder mounted at the folder around
the template's output `path`, so the step writes the file (or folder) itself at `path`, as kfp 1.8's
components expect. An output parameter is that file's text, read after the step (a regular file of at most
MAX_PARAMETER_BYTES of UTF-8, else the step fails). An input artifact is the producer's file or folder,
mounted read-only at the consumer's `path`.
"""

from __future__ import annotations

import os
import posixpath
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import RunError
from .run_plan import OutputFile, StepRun
from .run_text import escape

if TYPE_CHECKING:
    from ..engine import Bind

__all__ = [
    "MAX_PARAMETER_BYTES",
    "check_workdir",
    "make_folder",
    "output_key",
    "read_parameter",
    "step_mounts",
    "step_outputs",
]

MAX_PARAMETER_BYTES = 256 * 1024  # Argo keeps a parameter in the node's status; kfp's values are far smaller


def check_workdir(workdir: Path) -> Path:
    """The resolved work folder: absent or empty (so that nothing left from an earlier run passes for an
    output), with no character the engine's mount syntax cannot carry."""
    root = Path(workdir).resolve()
    if any(c in str(root) for c in ":,") or not str(root).isprintable():
        raise RunError(
            f"--workdir {escape(root)}: holds ':', ',' or a control character, which the engine's "
            "mount syntax cannot carry; choose another folder"
        )
    if Path(workdir).is_symlink():
        raise RunError(f"--workdir {escape(workdir)}: a symlink; give a real folder")
    if root.exists() and not root.is_dir():
        raise RunError(f"--workdir {escape(root)}: not a folder")
    if root.is_dir() and any(root.iterdir()):
        raise RunError(f"--workdir {escape(root)} is not an empty folder; run in an empty work folder")
    return root


def make_folder(root: Path, *names: str) -> Path:
    """root/names..., created one level at a time, refusing symlinks; it must resolve inside `root`."""
    path = root
    for name in names:
        path = path / name
        if path.is_symlink():
            raise RunError(f"{escape(path)}: a symlink in the work folder; run in an empty work folder")
        try:
            path.mkdir(exist_ok=True)
        except OSError as exc:
            raise RunError(
                f"{escape(path)}: cannot create the folder ({exc.strerror}); run in an empty work folder"
            ) from None
    resolved = path.resolve()
    if not resolved.is_relative_to(root) or resolved == root:
        raise RunError(f"{escape(path)} resolves to {escape(resolved)}, outside the work folder {escape(root)}")
    return resolved


def produced(path: Path, what: str) -> os.stat_result:
    """The file or folder a step wrote at `path`: it must exist and be one (a link or a device is refused: it
    would be followed on the host when mounted into the next step)."""
    try:
        info = path.lstat()
    except OSError:
        raise RunError(f"{what}: the step wrote nothing at {escape(path.name)}") from None
    if not (stat.S_ISREG(info.st_mode) or stat.S_ISDIR(info.st_mode)):
        raise RunError(f"{what}: the step left something other than a file or a folder there")
    return info


def read_parameter(path: Path, what: str) -> str:
    info = produced(path, what)
    if not stat.S_ISREG(info.st_mode):
        raise RunError(f"{what}: a folder, not a file holding the value")
    if info.st_size > MAX_PARAMETER_BYTES:
        raise RunError(
            f"{what}: {info.st_size} bytes, over the {MAX_PARAMETER_BYTES}-byte limit for a parameter; "
            "pass large values as artifacts"
        )
    descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(descriptor, "rb") as handle:
        data = handle.read(MAX_PARAMETER_BYTES + 1)
    try:
        return data[:MAX_PARAMETER_BYTES].decode()
    except UnicodeDecodeError:
        raise RunError(f"{what}: not UTF-8 text") from None


def step_mounts(root: Path, step: StepRun) -> tuple[list[Bind], dict[str, Path]]:
    """The step's mounts (its inputs read-only, a new host folder at the folder around each output), and where
    on the host each output will be (keyed by `output_key`)."""
    from ..engine import Bind

    binds = []
    for read in step.inputs:
        source = Path(read.source)
        produced(source, f"task {step.task}: input artifact {read.name} ({escape(read.source)})")
        binds.append(Bind(str(source), read.path, read_only=True))
    folders: dict[str, Path] = {}  # the folder around an output's path -> its host folder
    host: dict[str, Path] = {}
    used: set[str] = set()
    for written in step.outputs:
        parent = posixpath.dirname(written.path)
        if parent not in folders:
            label = written.name if written.name not in used else f"{written.name}-{len(used)}"
            used.add(label)
            folders[parent] = make_folder(root, *step.task.split("/"), label)
            binds.append(Bind(str(folders[parent]), parent))
        host[output_key(written)] = folders[parent] / posixpath.basename(written.path)
    return binds, host


def output_key(written: OutputFile) -> str:
    """An output's key among a step's host paths: an artifact and a parameter may share a name."""
    return written.name + ("\0p" if written.parameter else "")


def step_outputs(step: StepRun, host: Mapping[str, Path]) -> tuple[dict[str, Path], dict[str, str]]:
    """What a step that succeeded wrote: its artifacts (name -> host path) and its parameters' values."""
    outputs, parameters = {}, {}
    for written in step.outputs:
        what = f"task {step.task}: output {'parameter' if written.parameter else 'artifact'} {written.name}"
        path = host[output_key(written)]
        if written.parameter:
            parameters[written.name] = read_parameter(path, what)
        else:
            produced(path, what)
            outputs[written.name] = path
    return outputs, parameters
