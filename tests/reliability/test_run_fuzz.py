"""Seeded fuzzing of what `buildtool run` reads: the workflow file's bytes and its parsed structure.

Every input must end in a result or a RunError (exit 11), never another exception, and quickly.
The seeds are fixed, so a failure reproduces; a failing case prints its seed and mutation.
"""

from __future__ import annotations

import copy
import random
import time
from pathlib import Path
from typing import Any

import pytest

from buildtool.dev import run_checks, run_preview, run_workflow
from buildtool.errors import RunError

from .run_fixtures import ARGUMENTS, ENVIRONMENT, compile_project

CASES = 300
SECONDS_PER_CASE = 2.0
VALUES: list[Any] = [
    None,
    0,
    -1,
    10**400,
    1.5,
    True,
    "",
    "..",
    "../../x",
    "/abs",
    "a/b",
    "x\ny",
    "\x00",
    "a" * 300,
    "{{tasks.t.outputs.parameters.p}}",
    "{{inputs.parameters.nope}}",
    [],
    [None],
    [[]],
    {},
    {"a": 1},
    {"name": "n"},
    [{"name": ".."}],
    [{"name": "n", "hostPath": {"path": "/"}}],
    "evil.example.com/miner:latest",
]
KEYS = [
    "name",
    "value",
    "image",
    "volumes",
    "hostPath",
    "env",
    "valueFrom",
    "path",
    "from",
    "tasks",
    "dag",
    "container",
    "script",
    "dependencies",
    "arguments",
    "artifacts",
    "parameters",
    "secretKeyRef",
    "\n",
    "",
]
BYTES = [b"&a ", b"*a", b"\xff", b"\x00", b"[", b"{", b": ", b"\n- ", b"!!python/object:os.system ", b"'", b"\t"]


def nodes(tree: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path into `tree` (keys and indexes)."""
    found = [path]
    if isinstance(tree, dict):
        for key, value in tree.items():
            found += nodes(value, (*path, key))
    elif isinstance(tree, list):
        for index, value in enumerate(tree):
            found += nodes(value, (*path, index))
    return found


def mutate(tree: Any, rng: random.Random) -> str:
    """Change `tree` in place at one random place; say how."""
    path = rng.choice(nodes(tree)[1:])
    parent = tree
    for step in path[:-1]:
        parent = parent[step]
    last = path[-1]
    action = rng.randrange(4)
    if action == 0:
        parent[last] = copy.deepcopy(rng.choice(VALUES))
        return f"{path} = {parent[last]!r:.60}"
    if action == 1:
        del parent[last]
        return f"del {path}"
    if action == 2 and isinstance(parent[last], dict):
        key = rng.choice(KEYS)
        parent[last][key] = copy.deepcopy(rng.choice(VALUES))
        return f"{path}[{key!r}] = {parent[last][key]!r:.60}"
    if isinstance(parent, list):
        parent.append(copy.deepcopy(parent[last]))
        return f"duplicate {path}"
    parent[last] = copy.deepcopy(rng.choice(VALUES))
    return f"{path} = {parent[last]!r:.60}"


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], dict[str, str], str]:
    from ..conftest import write_project

    workflow, steps, path = compile_project(write_project(tmp_path_factory.mktemp("project")))
    return workflow, steps, path.read_text()


def plan(workflow: Any, steps: dict[str, str]) -> None:
    params = [f"{k}={v}" for k, v in ARGUMENTS.items()]
    try:
        run_preview.describe(run_preview.preview(run_workflow.plan_checked(workflow, params, ENVIRONMENT, steps)))
    except RunError as exc:
        assert "\n" not in str(exc)


@pytest.mark.parametrize("seed", range(3))
def test_mutated_structures_end_in_a_plan_or_a_run_error(compiled: Any, seed: int) -> None:
    workflow, steps, _ = compiled
    rng = random.Random(seed)
    for case in range(CASES):
        mutated = copy.deepcopy(workflow)
        how = [mutate(mutated, rng) for _ in range(rng.randint(1, 3))]
        started = time.monotonic()
        try:
            plan(mutated, steps)
        except Exception as exc:  # noqa: BLE001 - the point: anything else is a bug
            pytest.fail(f"seed {seed} case {case} ({'; '.join(how)}): {exc.__class__.__name__}: {exc}")
        assert time.monotonic() - started < SECONDS_PER_CASE, (seed, case, how)


@pytest.mark.parametrize("seed", range(2))
def test_mutated_files_end_in_a_plan_or_a_run_error(compiled: Any, seed: int, tmp_path: Path) -> None:
    _, steps, text = compiled
    data = text.encode()
    rng = random.Random(seed)
    path = tmp_path / "pipeline.yaml"
    for case in range(CASES // 3):
        mutated = bytearray(data)
        how = []
        for _ in range(rng.randint(1, 4)):
            at = rng.randrange(len(mutated))
            if rng.random() < 0.3:
                cut = rng.randint(1, 200)
                del mutated[at : at + cut]
                how.append(f"cut {cut} at {at}")
            else:
                insert = rng.choice(BYTES)
                mutated[at:at] = insert
                how.append(f"insert {insert!r} at {at}")
        path.write_bytes(bytes(mutated))
        started = time.monotonic()
        try:
            plan(run_checks.read_workflow(path), steps)
        except RunError:
            pass
        except Exception as exc:  # noqa: BLE001
            pytest.fail(f"seed {seed} case {case} ({'; '.join(how)}): {exc.__class__.__name__}: {exc}")
        assert time.monotonic() - started < SECONDS_PER_CASE, (seed, case, how)
