"""Dockerfiles rendered from Jinja2 templates, and the layer locks they install.

`outputs` renders, in memory, every file an image's template makes: its
Dockerfile (with a header naming the template and the command that regenerates
it) and one lock per layer group (layers.py). `write` replaces the files that
differ, atomically; `require_current` fails when a committed file differs from
what its template renders now (stale, or edited by hand).

The environment is Jinja2's sandbox with StrictUndefined: a template reads the
variables it is given and nothing else, and a missing variable is an error
naming the template, the line and the variable, never an empty string.
"""

from __future__ import annotations

import re
import types
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from ..config import Config, ImageConfig
from ..errors import ConfigError, RenderedStaleError, TemplateError
from ..util.fsutil import write_atomic
from .layers import Group, group_file, groups, parse_lock

LAYERS_FOLDER = "layers"
# The line before a RUN whose installer cache BuildKit may keep in a cache mount: target folder, and the
# flag that turns the cache off for the classic builder (builders.py drops it under BuildKit).
CACHE_MOUNT_MARK = "# buildtool: cache-mount "
_UNDEFINED = re.compile(r"'([^']+)' is undefined|has no attribute '([^']+)'")


@dataclass(frozen=True)
class Output:
    path: Path
    text: str


def _environment(folder: Path) -> SandboxedEnvironment:
    return SandboxedEnvironment(
        loader=jinja2.FileSystemLoader(str(folder)),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,
    )


def _relative(config: Config, path: Path) -> str:
    return str(path.relative_to(config.root)) if path.is_relative_to(config.root) else str(path)


def _template_line(exc: BaseException, filename: str) -> int | None:
    """The template line a render error came from: Jinja2 puts the template's frames in the traceback."""
    line = None
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == filename:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _header(config: Config, image: ImageConfig, template: str) -> str:
    return (
        f"# Rendered from {template} for image {image.name} by buildtool: do not edit.\n"
        f"# Change the template or [tool.buildtool.images.{image.name}], then run: buildtool render {image.name}\n"
    )


def outputs(config: Config, image: ImageConfig) -> list[Output]:
    """Every file `image`'s template renders, in memory; [] for a hand-written Dockerfile."""
    if image.template is None:
        return []
    assert config.templates is not None, "a loaded configuration names its templates folder"
    template_path = config.templates / image.template
    shown = _relative(config, template_path)
    image_groups = _layer_groups(config, image)
    result: list[Output] = []
    if image.requirements is not None:
        result = [Output(image.context / g.file, group_file(g, image.requirements, image.name)) for g in image_groups]
    if not template_path.is_file():
        raise TemplateError(
            f"{shown}: no such template (images.{image.name}.template in {config.path.name}); "
            f"create it or name a file of {_relative(config, config.templates)}"
        )
    variables: dict[str, Any] = {
        **image.template_vars,
        "image": image.name,
        "step": image.step,
        "installer": image.installer,
        "requirements": image.requirements,
        "layers": [
            types.MappingProxyType(
                {"index": g.index, "name": g.name, "file": g.file, "roots": g.roots, "count": len(g.packages)}
            )
            for g in image_groups
        ],
        "cache_mark": CACHE_MOUNT_MARK,
    }
    body = _render(config.templates, image, template_path, shown, variables)
    result.insert(0, Output(image.context / image.dockerfile, _header(config, image, shown) + body.rstrip("\n") + "\n"))
    return result


def _layer_groups(config: Config, image: ImageConfig) -> tuple[Group, ...]:
    """The layer groups of `image`'s requirements lock (none without one), as its `layers` configure them."""
    if image.requirements is None:
        return ()
    lock = image.context / image.requirements
    where = _relative(config, lock)
    try:
        text = lock.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{where}: cannot be read ({exc.__class__.__name__}); fix the file") from None
    packages = parse_lock(text, where)
    return groups(packages, image.layers, f"{config.path}: [tool.buildtool]", f"images.{image.name}.layers")


def _render(templates: Path, image: ImageConfig, template_path: Path, shown: str, variables: dict[str, Any]) -> str:
    """The template rendered with `variables`; TemplateError naming the file, the line and the fix."""
    assert image.template is not None, "only a templated image is rendered"
    try:
        return _environment(templates).get_template(image.template).render(variables)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(
            f"{shown}:{exc.lineno}: syntax error: {exc.message} (image {image.name}); fix the template"
        ) from None
    except jinja2.UndefinedError as exc:
        found = _UNDEFINED.search(str(exc))
        name = next((g for g in found.groups() if g), "?") if found else "?"
        line = _template_line(exc, str(template_path))
        raise TemplateError(
            f"{shown}:{line or '?'}: undefined variable {name!r} (image {image.name}): "
            f"{exc.message}; set it under [tool.buildtool.images.{image.name}.template_vars] "
            "or fix the template"
        ) from None
    except jinja2.TemplateError as exc:  # a sandbox refusal, a missing include, a filter error
        line = _template_line(exc, str(template_path))
        raise TemplateError(
            f"{shown}:{line or '?'}: {exc.__class__.__name__}: {exc} (image {image.name}); fix the template"
        ) from None


def stray_layer_files(image: ImageConfig, wanted: list[Output]) -> list[Path]:
    """Layer locks of groups that no longer exist."""
    folder = image.context / LAYERS_FOLDER
    keep = {o.path for o in wanted}
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob("*.txt") if p not in keep)


def _differs(output: Output) -> str | None:
    try:
        current = output.path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        return "missing"
    except (OSError, UnicodeDecodeError) as exc:
        return f"unreadable ({exc.__class__.__name__})"
    return None if current == output.text else "differs from what its template renders"


def problems(config: Config) -> list[str]:
    """One line per rendered file that is missing, stale or edited by hand (relative paths)."""
    found = []
    for image in config.images:
        wanted = outputs(config, image)
        for output in wanted:
            why = _differs(output)
            if why:
                found.append(f"{_relative(config, output.path)} {why}")
        found += [
            f"{_relative(config, p)} is left over from a layer group that no longer exists"
            for p in stray_layer_files(image, wanted)
        ]
    return found


def require_current(config: Config) -> None:
    """RenderedStaleError naming the files when a rendered file is not what its template renders now."""
    found = problems(config)
    if found:
        names = sorted({i.name for i in config.images if i.template})
        raise RenderedStaleError(
            f"{'; '.join(found[:5])}{' ...' if len(found) > 5 else ''}: run `buildtool "
            f"render {' '.join(names)}` (an edit by hand belongs in the template or in "
            "[tool.buildtool.images.NAME], where the next render keeps it)"
        )


def write(config: Config) -> list[Path]:
    """Render every templated image; replace the files that differ (atomically) and remove stray layer locks.
    Returns the paths changed. Every template renders before anything is written."""
    rendered: Mapping[str, list[Output]] = {image.name: outputs(config, image) for image in config.images}
    changed = []
    for image in config.images:
        for output in rendered[image.name]:
            output.path.parent.mkdir(parents=True, exist_ok=True)
            if write_atomic(output.path, output.text):
                changed.append(output.path)
        for stray in stray_layer_files(image, rendered[image.name]):
            stray.unlink()
            changed.append(stray)
    return changed
