"""`buildtool init`: the `[tool.buildtool]` table and one image context per step function, never overwriting.

The plan reads the steps module's source (it is parsed, not imported: nothing of the project runs)
and lists every file to write; if any of them exists, nothing is written. The project's .gitignore gets
the map's lock file (image_map.yaml.lock), which a build leaves beside the map, unless it ignores it already.
"""

from __future__ import annotations

import ast
import fnmatch
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config.schema import DEFAULTS
from .errors import ConfigError
from .lock.map_lock import lock_path
from .util import fsutil

DOCKERFILE = """\
# The image of step {step}. kfp puts the step function's source into the pipeline itself; this image
# holds what the function imports (buildtool build checks each import inside it).
ARG BASE_IMAGE
FROM ${{BASE_IMAGE}}
# Add the step's packages, e.g. a pinned requirements.txt (and let it through .dockerignore):
# COPY requirements.txt /tmp/requirements.txt
# RUN pip install --no-cache-dir --require-hashes -r /tmp/requirements.txt
"""
# Only what the Dockerfile copies reaches the engine: no secrets, datasets or .git.
DOCKERIGNORE = "*\n!Dockerfile\n"
MAP = str(DEFAULTS["image_map"])  # init leaves image_map at its default
MAP_LOCK = lock_path(Path(MAP)).name
_MODULE = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")


@dataclass(frozen=True)
class Scaffold:
    """What init writes: new files, and the table appended to the configuration."""

    config: Path
    config_text: str  # the whole new configuration file
    files: tuple[tuple[Path, str], ...]  # (path, text) of every new file
    steps: tuple[str, ...]
    ignore: IgnoreUpdate | None = None  # the .gitignore, when the map's lock file must be added to it


@dataclass(frozen=True)
class IgnoreUpdate:
    """The project's .gitignore, whole, with the map's lock file added."""

    path: Path
    text: str
    created: bool  # there was no .gitignore


def image_name(step: str) -> str:
    """A step function's name as an image (repository) name: lowercase, '_' as '-'."""
    return re.sub(r"[^a-z0-9]+", "-", step.lower()).strip("-")


def module_file(root: Path, module: str) -> Path:
    """The source file of `module` under `root` (`a/b.py` or `a/b/__init__.py`)."""
    if not _MODULE.match(module):
        raise ConfigError(f"--steps-module {module!r} is not a dotted module name, e.g. mypipeline.steps")
    base = root.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    raise ConfigError(
        f"--steps-module {module}: no {base.relative_to(root)}.py under {root}; "
        "give the module that defines the step functions"
    )


def step_functions(source: Path) -> list[str]:
    """Top-level public functions of the module at `source`: the steps kfp builds components from."""
    try:
        tree = ast.parse(source.read_bytes(), filename=str(source))
    except (SyntaxError, ValueError) as exc:
        raise ConfigError(
            f"{source}: cannot be parsed ({exc.__class__.__name__}: {exc}); fix it, then run init again"
        ) from None
    return [node.name for node in tree.body if isinstance(node, ast.FunctionDef) and not node.name.startswith("_")]


def _toml_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def plan(
    config: Path,
    steps_module: str,
    *,
    pipeline: str | None = None,
    repository: str | None = None,
    registry: str = "127.0.0.1:5000",
    base_image: str = "python:3.11-slim",
) -> Scaffold:
    """Everything init would write for the project whose configuration is `config`; ConfigError if any exists."""
    root = config.resolve().parent
    text, data = _read_config(config)
    steps = step_functions(module_file(root, steps_module))
    if not steps:
        raise ConfigError(
            f"--steps-module {steps_module}: defines no public function; each step of the pipeline is a function there"
        )
    package = steps_module.rpartition(".")[0]
    pipeline = pipeline or (f"{package}.pipeline" if package else "pipeline") + ":make_pipeline"
    lines = ["[tool.buildtool]", f"registry = {_toml_string(registry)}"]
    if repository or not data.get("project", {}).get("name"):
        lines.append(f"repository = {_toml_string(repository or image_name(root.name) or 'pipeline')}")
    else:
        lines.append("# repository: [project].name, unless set here (images are <registry>/<repository>/<image>)")
    lines += [
        f"base_image = {_toml_string(base_image)}",
        "# module:function taking the step -> image map (img_name_map) and returning the pipeline function",
        f"pipeline = {_toml_string(pipeline)}",
        f"steps_module = {_toml_string(steps_module)}",
    ]
    images, files = _images(root, steps_module, steps)
    table = "\n".join(lines + images) + "\n"
    if text:
        table = text + ("" if text.endswith("\n") else "\n") + "\n" + table
    return Scaffold(config, table, tuple(files), tuple(steps), _ignore(root))


def _read_config(config: Path) -> tuple[str, dict[str, Any]]:
    """The configuration's text ("" when there is none) and its TOML; ConfigError if it has [tool.buildtool]."""
    text = config.read_text(encoding="utf-8") if config.is_file() else ""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{config}: not valid TOML: {exc}") from None
    if "buildtool" in data.get("tool", {}):
        raise ConfigError(
            f"{config}: already has [tool.buildtool]; init writes nothing over it "
            "(edit it, or remove the table to start again)"
        )
    return text, data


def _images(root: Path, steps_module: str, steps: list[str]) -> tuple[list[str], list[tuple[Path, str]]]:
    """The image tables' lines and the context files of one image per step; ConfigError if a file exists."""
    lines: list[str] = []
    files: list[tuple[Path, str]] = []
    names: dict[str, str] = {}
    for step in steps:
        name = image_name(step)
        if name in names:
            raise ConfigError(
                f"--steps-module {steps_module}: functions {names[name]} and {step} would share the "
                f"image name {name!r}; rename one"
            )
        names[name] = step
        context = root / "images" / name
        lines += ["", f"[tool.buildtool.images.{name}]", f'context = "images/{name}"', f"step = {_toml_string(step)}"]
        files += [(context / "Dockerfile", DOCKERFILE.format(step=step)), (context / ".dockerignore", DOCKERIGNORE)]
    taken = sorted(str(path.relative_to(root)) for path, _ in files if path.exists() or path.is_symlink())
    if taken:
        raise ConfigError(
            f"{', '.join(taken)} already exist(s); init overwrites nothing: move them away or write "
            "[tool.buildtool] by hand"
        )
    return lines, files


def _ignore(root: Path) -> IgnoreUpdate | None:
    """The project's .gitignore with the map's lock file in it; None when git ignores that file already."""
    path = root / ".gitignore"
    if path.is_symlink() or (path.exists() and not path.is_file()):
        raise ConfigError(
            f"{path}: not a plain file; init adds {MAP_LOCK} to it: make it one, or add the line and run init again"
        )
    try:
        text = path.read_text(encoding="utf-8") if path.exists() else ""
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"{path}: cannot be read ({exc.__class__.__name__}); init adds {MAP_LOCK} to it: "
            "fix it, then run init again"
        ) from None
    if ignores(text, MAP_LOCK):
        return None
    added = f"# the lock `buildtool build` holds while it writes {MAP}\n{MAP_LOCK}\n"
    return IgnoreUpdate(
        path, text + ("\n" if text and not text.endswith("\n") else "") + added, created=not path.exists()
    )


def ignores(text: str, name: str) -> bool:
    """Whether the .gitignore `text` ignores the file `name` at the top of the repository (last match wins)."""
    ignored = False
    for line in text.splitlines():
        pattern = line.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negated = pattern.startswith("!")
        if fnmatch.fnmatchcase(name, pattern.removeprefix("!").removeprefix("/")):
            ignored = not negated
    return ignored


def write(scaffold: Scaffold) -> None:
    """Create the planned files (each exclusively: one created meanwhile is not overwritten), then the table."""
    for path, text in scaffold.files:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with open(path, "x", encoding="utf-8") as handle:
                handle.write(text)
        except FileExistsError:
            raise ConfigError(f"{path}: appeared while init ran; init overwrites nothing") from None
    if scaffold.ignore is not None:
        fsutil.write_atomic(scaffold.ignore.path, scaffold.ignore.text)
    fsutil.write_atomic(scaffold.config, scaffold.config_text)
