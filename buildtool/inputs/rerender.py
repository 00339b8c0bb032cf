"""Before a build: rendered files that are merely stale are rendered again; one edited by hand is refused.

A rendered file (a Dockerfile, a layer lock) that differs from what its template renders now is either stale
(the template, a variable or the requirements lock changed since) or edited by hand. The image map tells them
apart: it records a fingerprint of every file an image was built from, so a file that still holds the bytes of
the last build was not touched since, and rendering it again loses nothing. Any other difference is someone's
edit, which the next render would silently drop: refused with exit 14, as `check` does, nothing written.
A missing file is rendered.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..config import Config, ImageConfig
from ..errors import RenderedStaleError
from ..lock.image_map import ImageMap
from ..util.fsutil import write_atomic
from .context import file_sha256
from .render import Output, outputs, stray_layer_files


@dataclass(frozen=True)
class _Judged:
    write: list[Output]  # missing or merely stale: rendered again
    remove: list[Path]  # layer locks of groups that no longer exist, as the last build left them
    edited: list[str]  # files edited by hand, relative to the project


def _as_built(image: ImageConfig, path: Path, previous: ImageMap | None) -> bool:
    """Whether `path` holds the bytes the image map recorded for it: the file the last build of `image` used."""
    locked = previous.images.get(image.name) if previous is not None else None
    if locked is None or not path.is_relative_to(image.context):
        return False
    recorded = locked.inputs.get(f"file:{path.relative_to(image.context).as_posix()}")
    if not recorded:
        return False
    try:
        found = file_sha256(path)
    except OSError:
        return False
    return found.startswith(recorded.removeprefix("x:"))


def _judge(config: Config, image: ImageConfig, previous: ImageMap | None) -> _Judged:
    wanted = outputs(config, image)
    judged = _Judged([], [], [])
    for output in wanted:
        try:
            current: bytes | None = output.path.read_bytes()
        except FileNotFoundError:
            current = None
        except OSError:
            current = b""  # unreadable: neither what renders nor what was built, so it is refused below
        if current == output.text.encode("utf-8"):
            continue
        if current is None or _as_built(image, output.path, previous):
            judged.write.append(output)
        else:
            judged.edited.append(str(output.path.relative_to(config.root)))
    for stray in stray_layer_files(image, wanted):
        if _as_built(image, stray, previous):
            judged.remove.append(stray)
        else:
            judged.edited.append(str(stray.relative_to(config.root)))
    return judged


def rerender_stale(config: Config, previous: ImageMap | None) -> list[Path]:
    """Render the stale files of the templated images of `config` again (atomically); the paths changed.

    RenderedStaleError, with nothing written, when a file was edited by hand. Every template renders and every
    file is judged before anything is written."""
    judged = {image.name: _judge(config, image, previous) for image in config.images if image.template}
    edited = [path for j in judged.values() for path in j.edited]
    if edited:
        names = " ".join(sorted(judged))
        raise RenderedStaleError(
            f"{'; '.join(edited[:5])}{' ...' if len(edited) > 5 else ''}: edited by hand (differs from what its "
            f"template renders and from what {config.image_map.name} recorded for the last build); move the edit "
            f"into the template or [tool.buildtool.images.NAME], then run `buildtool render {names}` (which "
            "overwrites the file)"
        )
    changed = []
    for image_judged in judged.values():
        for output in image_judged.write:
            output.path.parent.mkdir(parents=True, exist_ok=True)
            if write_atomic(output.path, output.text):
                changed.append(output.path)
        for stray in image_judged.remove:
            stray.unlink()
            changed.append(stray)
    return changed
