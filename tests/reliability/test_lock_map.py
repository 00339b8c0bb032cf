"""The lock covers what it hands out: a hostile image_map.yaml is refused by check, compile and verify alike.

Each row edits the map of a freshly locked project, runs a command, and expects the image-map exit
code (3) with a message naming the file, key or step; the map and pipeline.yaml stay byte-identical.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from .conftest import Guard, assert_refused, run_in_process, run_subprocess

EVIL = "evil.example.com/x@sha256:" + "e" * 64
COMMANDS = {"check": ("check",), "compile": ("compile",), "verify": ("verify", "--offline")}
MAP_CODE = 3


def steps_line(text: str, step: str) -> str:
    """The `  step: reference` line of the steps section (the first with that key)."""
    return next(line for line in text.splitlines() if line.startswith(f"  {step}: "))


def foreign_step(text: str) -> str:
    """steps.training names a foreign image; images: is left alone."""
    return text.replace(steps_line(text, "training"), f"  training: {EVIL}", 1)


def another_mapped_image(text: str) -> str:
    """steps.training names the upload image: pinned, in the map, but not the one serving training."""
    upload = steps_line(text, "upload_model").split(": ", 1)[1]
    return text.replace(steps_line(text, "training"), f"  training: {upload}", 1)


def duplicate_step(text: str) -> str:
    line = steps_line(text, "training")
    return text.replace(line, f"{line}\n  training: {EVIL}", 1)


def unknown_step(text: str) -> str:
    return text.replace("steps:\n", f"steps:\n  mining: {EVIL}\n", 1)


def unrecorded_image(text: str) -> str:
    """images.training is renamed, so steps.training is tied to nothing."""
    return text.replace("  training:\n    reference:", "  training2:\n    reference:", 1)


def alias_bomb(text: str) -> str:
    """A few KB of nested aliases in images.base.inputs: 10^9 strings once expanded."""
    lines = ["      bomb0: &a0 [" + ", ".join(["lol"] * 10) + "]"]
    lines += [f"      bomb{n}: &a{n} [" + ", ".join([f"*a{n - 1}"] * 10) + "]" for n in range(1, 10)]
    return text.replace("    inputs:\n", "    inputs:\n" + "\n".join(lines) + "\n", 1)


def anchor_only(text: str) -> str:
    return text.replace("steps:\n", "steps: &all\n", 1)


def merge_key(text: str) -> str:
    return text.replace("steps:\n", f"steps:\n  <<: {{training: {EVIL}}}\n", 1)


def python_tag(text: str) -> str:
    return text.replace("steps:\n", "steps:\n  x: !!python/object/apply:os.system ['id']\n", 1)


def step_as_list(text: str) -> str:
    line = steps_line(text, "training")
    return text.replace(line, f"  training: [{line.split(': ', 1)[1]}]", 1)


def unpinned_step(text: str) -> str:
    return text.replace(steps_line(text, "training"), "  training: 127.0.0.1:5000/t/training:latest", 1)


def steps_not_mapping(text: str) -> str:
    start = text.index("steps:\n")
    end = text.index("images:\n")
    return text[:start] + "steps: abc\n" + text[end:]


def recorded(text: str, image: str) -> str:
    """images.<image>.reference as the map holds it."""
    return text.split(f"\n  {image}:\n    reference: ", 1)[1].split("\n", 1)[0]


def consistent_foreign(text: str) -> str:
    """Both sections name upload's repository and digest under training's own inputs tag: consistent, and false."""
    training, upload = recorded(text, "training"), recorded(text, "upload")
    tag = training.split("@")[0].rsplit(":", 1)[1]
    forged = upload.split(":in-")[0] + f":{tag}@" + upload.split("@")[1]
    return text.replace(training, forged)


def other_registry(text: str) -> str:
    training = recorded(text, "training")
    return text.replace(training, training.replace("127.0.0.1:5000/", "127.0.0.1:5001/", 1))


def other_repository(text: str) -> str:
    training = recorded(text, "training")
    return text.replace(training, training.replace("/t/training:", "/u/training:", 1))


def other_inputs_tag(text: str) -> str:
    training = recorded(text, "training")
    return text.replace(training, training.split(":in-")[0] + ":in-0123456789abcdef@" + training.split("@")[1])


def trailing_newline(text: str) -> str:
    training = recorded(text, "training")
    return text.replace(training, f'"{training}\\n"')


def base_other_repository(text: str) -> str:
    """An image serving no step is bound too: base's reference moved to another repository."""
    base = recorded(text, "base")
    return text.replace(base, base.replace("/t/base:", "/t/upload:", 1))


TEXT_ROWS: list[tuple[str, Callable[[str], str], str]] = [
    ("consistent-foreign-repository", consistent_foreign, "images.training.reference: '127.0.0.1:5000/t/upload:in-"),
    ("consistent-other-registry", other_registry, "is not bound to its image: expected 127.0.0.1:5000/t/training:in-"),
    ("consistent-other-repository", other_repository, "expected 127.0.0.1:5000/t/training:in-"),
    ("consistent-other-inputs-tag", other_inputs_tag, ":in-0123456789abcdef@sha256:"),
    ("reference-ends-in-newline", trailing_newline, "is not 'sha256:' followed by 64 lowercase hex characters"),
    ("base-other-repository", base_other_repository, "images.base.reference: '127.0.0.1:5000/t/upload:in-"),
    ("steps-foreign-image", foreign_step, "steps.training: evil.example.com/x@sha256:"),
    ("steps-other-mapped-image", another_mapped_image, "differs from images.training.reference"),
    ("duplicate-step-key", duplicate_step, "duplicate key training"),
    ("unknown-step", unknown_step, "steps.mining"),
    ("step-image-not-recorded", unrecorded_image, "images.training (the image serving it) is not recorded"),
    ("alias-bomb-in-inputs", alias_bomb, "anchors and aliases are not accepted"),
    ("anchor", anchor_only, "anchor &all"),
    ("merge-key", merge_key, "merge key '<<'"),
    ("python-tag", python_tag, "could not determine a constructor"),
    ("step-not-a-string", step_as_list, "steps.training: '["),
    ("step-unpinned", unpinned_step, "steps.training: '127.0.0.1:5000/t/training:latest' is not pinned by digest"),
    ("steps-not-a-mapping", steps_not_mapping, "no 'steps' mapping"),
]


@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize("edit, fragment", [pytest.param(e, f, id=i) for i, e, f in TEXT_ROWS])
def test_hostile_map_text_is_refused(
    locked_project: Path, command: str, edit: Callable[[str], str], fragment: str
) -> None:
    path = locked_project / "image_map.yaml"
    path.write_text(edit(path.read_text()))
    guard = Guard(locked_project)
    outcome = run_in_process(locked_project, *COMMANDS[command])
    line = assert_refused(outcome, MAP_CODE, fragment)
    assert "image_map.yaml" in line
    assert outcome.seconds < 10
    guard.check()


def byte_0xff(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data.replace(b"steps:", b"steps:\xff", 1))


def nul_byte(path: Path) -> None:
    path.write_bytes(path.read_bytes().replace(b"steps:\n", b"steps:\n  x: \x00\n", 1))


def map_is_a_folder(path: Path) -> None:
    path.unlink()
    path.mkdir()


def endless_map(path: Path) -> None:
    """A link to /dev/zero: a reader that trusts it reads forever."""
    path.unlink()
    path.symlink_to("/dev/zero")


def fifo_map(path: Path) -> None:
    """A named pipe nobody writes to: a reader that opens it waits forever."""
    path.unlink()
    os.mkfifo(path)


def huge_map(path: Path) -> None:
    """47 MB: a valid map followed by megabytes of comments; refused by its size, before it is read."""
    with open(path, "a") as handle:
        line = "# " + "x" * 1021 + "\n"
        for _ in range(47 * 1024):
            handle.write(line)


def many_nodes(path: Path) -> None:
    """Under the size cap, but a quarter of a million nodes."""
    path.write_text(path.read_text() + "extra:\n" + "- 1\n" * 240_000)


def deep_nesting(path: Path) -> None:
    path.write_text("steps: " + "[" * 200_000 + "\n")


FILE_ROWS: list[tuple[str, Callable[[Path], None], int, str]] = [
    ("byte-0xff", byte_0xff, MAP_CODE, "not UTF-8 (byte 0xff at offset"),
    ("nul-byte", nul_byte, MAP_CODE, "control characters are not allowed"),
    ("map-is-a-fifo", fifo_map, MAP_CODE, "not a regular file"),
    ("map-links-to-dev-zero", endless_map, 2, "image_map: 'image_map.yaml' lies outside the repository"),
    ("map-is-a-folder", map_is_a_folder, 2, "image_map: 'image_map.yaml' is a folder"),  # the configuration says so
]
BOMB_ROWS: list[tuple[str, Callable[[Path], None], str]] = [
    ("map-47MB", huge_map, "bytes, more than the 1000000 accepted"),
    ("map-240k-nodes", many_nodes, "more than 200000 nodes"),
    ("map-nested-200k-deep", deep_nesting, "nesting"),
]


@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize("edit, code, fragment", [pytest.param(e, c, f, id=i) for i, e, c, f in FILE_ROWS])
def test_unreadable_map_is_refused(
    locked_project: Path, command: str, edit: Callable[[Path], None], code: int, fragment: str
) -> None:
    edit(locked_project / "image_map.yaml")
    guard = Guard(locked_project)
    line = assert_refused(run_in_process(locked_project, *COMMANDS[command]), code, fragment)
    assert "image_map.yaml" in line
    guard.check()


@pytest.mark.parametrize(
    "edit, fragment",
    [
        pytest.param(e, f, id=i)
        for i, e, f in BOMB_ROWS
        + [("alias-bomb-in-inputs", lambda p: p.write_text(alias_bomb(p.read_text())), "anchors and aliases")]
    ],
)
def test_map_bombs_fail_fast_in_bounded_memory(
    locked_project: Path, edit: Callable[[Path], None], fragment: str
) -> None:
    edit(locked_project / "image_map.yaml")
    guard = Guard(locked_project)
    outcome = run_subprocess(locked_project, "check", timeout=30)
    assert_refused(outcome, MAP_CODE, fragment)
    assert outcome.seconds < 10, f"took {outcome.seconds:.1f} s"
    assert outcome.max_rss_mb is not None and outcome.max_rss_mb < 200, f"peak RSS {outcome.max_rss_mb:.0f} MB"
    guard.check()


def test_the_untouched_lock_passes_every_command(locked_project: Path) -> None:
    """The control row: the harness sees success when nothing was edited."""
    guard = Guard(locked_project)
    for args in COMMANDS.values():
        if args == ("compile",):
            args = ("compile", "--output", str(locked_project.parent / "elsewhere.yaml"))
        outcome = run_in_process(locked_project, *args)
        assert outcome.code == 0, outcome.err
    guard.check()
