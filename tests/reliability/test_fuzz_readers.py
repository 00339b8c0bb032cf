"""Fuzzing the readers of files buildtool is pointed at: the image map and compiled workflows.

Whatever the bytes, `check` and `verify` end in a code of buildtool/errors.py with at most one
error line, never "unexpected", quickly; and `verify` never passes a workflow that names an image the
map does not hand out.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from buildtool import config
from buildtool.gate import compiler, kfp_compile, verify
from buildtool.lock import freshness, image_map

from ..conftest import write_project
from ..helpers import write_lock
from .conftest import DOCUMENTED, Outcome, run_in_process

EXAMPLES = int(os.environ.get("BUILDTOOL_FUZZ_EXAMPLES", "100"))  # raise it for a longer hunt
# CI replays the same inputs on every run (derandomized); a developer's run explores new ones.
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    derandomize=bool(os.environ.get("CI")),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
SECONDS = 5  # per input, on a shared machine; the unbounded readers took minutes

# Pieces of YAML (and of what breaks YAML readers) spliced into a valid file.
TOKENS = [
    b"&a ",
    b"*a",
    b"<<: ",
    b"\xff",
    b"\x00",
    b"\xef\xbb\xbf",
    b"- ",
    b": ",
    b"[",
    b"]",
    b"{",
    b"}",
    b"!!python/object/apply:os.system ",
    b"!!binary ",
    b"\n",
    b"  ",
    b"\t",
    b"'",
    b'"',
    b"#",
    b"|",
    b">",
    b"? ",
    b"---\n",
    b"...\n",
    b"%YAML 1.1\n",
    b"training",
    b"steps",
    b"images",
    b"image",
    b"podSpecPatch",
    b"@sha256:" + b"e" * 64,
    b"evil.example.com/x",
    b"templates",
    b"abc",
    b"\\u0000",
    b"1e999",
    b"~",
]


@st.composite
def mutated(draw: st.DrawFn, original: bytes) -> bytes:
    """`original` with a few splices: a token inserted, a span deleted, a byte replaced, or a span repeated."""
    data = bytearray(original)
    for _ in range(draw(st.integers(1, 6))):
        at = draw(st.integers(0, len(data)))
        kind = draw(st.sampled_from(["insert", "delete", "byte", "repeat"]))
        if kind == "insert":
            data[at:at] = draw(st.sampled_from(TOKENS))
        elif kind == "delete":
            del data[at : at + draw(st.integers(1, 200))]
        elif kind == "byte" and at < len(data):
            data[at] = draw(st.integers(0, 255))
        elif kind == "repeat":
            span = bytes(data[at : at + draw(st.integers(1, 40))])
            data[at:at] = span * draw(st.integers(1, 50))
    return bytes(data)


KEYS = st.sampled_from(
    [
        "image",
        "podSpecPatch",
        "manifest",
        "containers",
        "sidecars",
        "initContainers",
        "containerSet",
        "script",
        "container",
        "templateRef",
        "metadata",
        "annotations",
        verify.COMPONENT_SPEC,
        "templates",
        "spec",
        "name",
        "resource",
        "templateDefaults",
        "steps",
        "images",
        "reference",
        "training",
        "x",
        "Image",
        "PodSpecPatch",
    ]
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(max_size=30),
    st.sampled_from(
        [
            "evil.example.com/miner:latest",
            "evil.example.com/m@sha256:" + "e" * 64,
            json.dumps({"containers": [{"image": "evil:1"}]}),
            "kind: Pod\nspec: {containers: [{image: evil}]}",
        ]
    ),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(KEYS, inner, max_size=4)),
    max_leaves=20,
)


def dump(data: Any) -> bytes:
    return yaml.dump(data, Dumper=getattr(yaml, "CSafeDumper", yaml.SafeDumper)).encode()


def paths(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from paths(value, (*prefix, index))


@st.composite
def grafted(draw: st.DrawFn, original: Any) -> Any:
    """`original` (parsed) with a few nodes replaced by, or given, hostile values."""
    data = json.loads(json.dumps(original))
    for _ in range(draw(st.integers(1, 3))):
        where = draw(st.sampled_from(list(paths(data))))
        value = draw(VALUES)
        if not where:
            data = value
            continue
        parent = data
        for step in where[:-1]:
            parent = parent[step]
        if isinstance(parent[where[-1]], dict) and draw(st.booleans()):
            parent[where[-1]][draw(KEYS)] = value
        else:
            parent[where[-1]] = value
    return data


@pytest.fixture(scope="module", autouse=True)
def _one_compile_per_inputs() -> Iterator[None]:
    """verify's fresh compile, made once per compile inputs: the fuzzed files change, the project's sources do not.

    Keyed by what `compile` reads (freshness.inputs_digest): a fuzzed map that hands out other images still
    compiles anew.
    """
    compiled: dict[tuple[str, str], dict[str, Any]] = {}
    compile_now = kfp_compile.create_workflow

    def create_workflow(loaded: config.Config, steps: Mapping[str, str]) -> dict[str, Any]:
        key = (str(loaded.root), freshness.inputs_digest(loaded, steps))
        if key not in compiled:
            compiled[key] = compile_now(loaded, steps)
        return copy.deepcopy(compiled[key])

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(kfp_compile, "create_workflow", create_workflow)
        yield


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fuzz")
    write_project(root)
    loaded, _ = write_lock(root / "pyproject.toml")
    compiler.compile_pipeline(loaded, loaded.output)
    return root


def ends_well(outcome: Outcome) -> None:
    assert outcome.code == 0 or outcome.code in DOCUMENTED, (outcome.code, outcome.err)
    if outcome.code:
        assert outcome.err.count("\n") == 1 and outcome.err.startswith("buildtool: error: "), outcome.err
    assert "error: unexpected " not in outcome.err and "Traceback" not in outcome.err
    assert outcome.seconds < SECONDS, f"took {outcome.seconds:.1f} s"


class Files:
    """The project's map and workflow as generated, put back after each input."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.map = (root / "image_map.yaml").read_bytes()
        self.workflow = (root / "pipeline.yaml").read_bytes()
        self.map_data = yaml.safe_load(self.map)
        self.workflow_data = yaml.safe_load(self.workflow)

    def run(self, name: str, data: bytes, *args: str) -> Outcome:
        (self.root / name).write_bytes(data)
        try:
            return run_in_process(self.root, *args)
        finally:
            (self.root / "image_map.yaml").write_bytes(self.map)
            (self.root / "pipeline.yaml").write_bytes(self.workflow)


@pytest.fixture(scope="module")
def files(project: Path) -> Files:
    return Files(project)


@FUZZ
@given(data=st.data())
def test_map_bytes_end_in_a_documented_code(files: Files, data: st.DataObject) -> None:
    ends_well(files.run("image_map.yaml", data.draw(mutated(files.map)), "check"))


@FUZZ
@given(data=st.data())
def test_map_structures_end_in_a_documented_code(files: Files, data: st.DataObject) -> None:
    hostile = data.draw(grafted(files.map_data))
    ends_well(files.run("image_map.yaml", dump(hostile), "check"))


@FUZZ
@given(data=st.data())
def test_workflow_bytes_end_in_a_documented_code(files: Files, data: st.DataObject) -> None:
    ends_well(files.run("pipeline.yaml", data.draw(mutated(files.workflow)), "verify", "--offline"))


def images_anywhere(node: Any) -> Iterator[Any]:
    if isinstance(node, dict):
        for key, value in node.items():
            if str(key).lower() == "image":
                yield value
            yield from images_anywhere(value)
    elif isinstance(node, list):
        for item in node:
            yield from images_anywhere(item)


@FUZZ
@given(data=st.data())
def test_verify_never_passes_a_foreign_image(files: Files, data: st.DataObject) -> None:
    hostile = data.draw(grafted(files.workflow_data))
    outcome = files.run("pipeline.yaml", dump(hostile), "verify", "--offline")
    ends_well(outcome)
    if outcome.code == 0:
        handed_out = set(image_map.parse(files.map.decode(), Path("image_map.yaml")).steps.values())
        assert set(map(str, images_anywhere(hostile))) <= handed_out
