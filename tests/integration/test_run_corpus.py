"""`buildtool run` on the corpus of ordinary kfp 1.8 pipelines (tests/corpus), compared with kfp's own runner.

Each pipeline is compiled by the real kfp compiler with its components on the bootstrapped base, pinned by
digest, and run with `buildtool run` on the real engine. Its outputs must equal:

- what kfp 1.8's `LocalClient` (docker mode, `kfp.run_pipeline_func_locally`) writes for the same pipeline
  and arguments, for every output LocalClient produces (each corpus module's `LOCAL_CLIENT` says which,
  and why not the others);
- and every output, what the component functions themselves compute in this process (`expected`).
"""

# No `from __future__ import annotations`: kfp reads the corpus functions' annotations as objects.
import importlib
import json
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from buildtool import cli

from .conftest import BASE_IMAGE, served_digest

CORPUS = ["file_outputs", "named_tuple", "condition", "loop_param", "loop_items", "exit_handler"]


@pytest.fixture(scope="module")
def base(registry: str) -> str:
    digest = served_digest(BASE_IMAGE)
    assert digest, f"{BASE_IMAGE} is not in the registry; run scripts/infra-up.sh"
    return f"{BASE_IMAGE.rpartition(':')[0]}@{digest}"


def compile_corpus(module: Any, image: str, path: Path) -> None:
    import kfp.compiler

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # kfp's own deprecation notes
        kfp.compiler.Compiler().compile(module.make_pipeline(image), str(path))


def run(
    path: Path, workdir: Path, arguments: dict[str, Any], capsys: pytest.CaptureFixture[str], *options: str
) -> tuple[int, str, str]:
    params = [item for name, value in arguments.items() for item in ("-p", f"{name}={value}")]
    code = cli.main(
        ["--config", str(path.parent / "absent.toml"), "run", str(path), "--workdir", str(workdir), *params, *options]
    )
    out, err = capsys.readouterr()
    return code, out, err


def written(workdir: Path, node: str, output: str) -> str:
    """The file `buildtool run` kept for `output` of `node`: kfp names the artifact `<template>-<output>`."""
    [path] = [p for p in (workdir / node).glob(f"*-{output}/data")]
    return path.read_text()


def local_client(module: Any, image: str | Mapping[str, str], root: Path) -> dict[tuple[str, str], str]:
    """LocalClient's run of the same pipeline: (buildtool node, output) -> its file, for LOCAL_CLIENT's outputs."""
    import kfp
    from kfp import LocalClient

    root.mkdir()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = kfp.run_pipeline_func_locally(
            module.make_pipeline(image),
            module.ARGUMENTS,
            pipeline_root=str(root),
            execution_mode=LocalClient.ExecutionMode(mode="docker"),
        )
    found = {}
    for node, output, op, iteration in module.LOCAL_CLIENT:
        path = Path(result.get_output_file(op, output))
        if iteration is not None:  # LocalClient runs item N of a loop under <run>/<N>/
            path = root / result.run_id / str(iteration) / path.relative_to(root / result.run_id)
        found[(node, output)] = path.read_text()
    return found


@pytest.mark.parametrize("name", CORPUS)
def test_corpus_runs_as_kfp_runs_it(name: str, base: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    module = importlib.import_module(f"tests.corpus.{name}")
    pipeline = tmp_path / "pipeline.yaml"
    compile_corpus(module, base, pipeline)
    code, out, err = run(pipeline, tmp_path / "work", module.ARGUMENTS, capsys)
    assert code == 0, err
    ours = {key: written(tmp_path / "work", *key) for key in module.expected(module.ARGUMENTS)}
    assert ours == module.expected(module.ARGUMENTS)
    if name == "loop_items":
        with pytest.raises(Exception, match="Not implemented"):
            local_client(module, base, tmp_path / "local-client")
        return
    theirs = local_client(module, base, tmp_path / "local-client")
    assert theirs, "LocalClient produced nothing to compare"
    assert {key: ours.get(key, written(tmp_path / "work", *key)) for key in theirs} == theirs


def test_a_condition_that_does_not_hold_is_skipped_and_reported(
    base: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.corpus import condition

    pipeline = tmp_path / "pipeline.yaml"
    compile_corpus(condition, base, pipeline)
    for number in (12, 3):
        workdir = tmp_path / f"work-{number}"
        code, out, err = run(pipeline, workdir, {"number": number}, capsys)
        assert code == 0, err
        skipped = condition.skipped({"number": number})
        [line] = [line for line in out.splitlines() if line.startswith(f"{skipped} ")]
        assert " skipped " in line and "does not hold" in line
        assert not (workdir / skipped).exists()
        for (node, output), value in condition.expected({"number": number}).items():
            assert written(workdir, node, output) == value


def test_the_exit_handler_runs_after_a_failure_and_sees_it(
    base: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.corpus import exit_handler

    pipeline = tmp_path / "pipeline.yaml"
    compile_corpus(exit_handler, base, pipeline)
    arguments = {"fail": "yes"}
    code, out, err = run(pipeline, tmp_path / "work", arguments, capsys)
    assert code == 11
    assert "\nbuildtool: error: step exit-handler-1/work failed with exit code 1" in err and "asked to fail" in err
    assert written(tmp_path / "work", "cleanup", "Output") == exit_handler.expected(arguments)[("cleanup", "Output")]
    states = {line.split()[0]: line.split()[1] for line in out.splitlines() if line.startswith(("cleanup ", "exit-"))}
    assert states == {"cleanup": "succeeded", "exit-handler-1": "failed", "exit-handler-1/work": "failed"}


def test_independent_tasks_run_at_once_and_a_loop_is_bounded(
    base: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Three loop items at --jobs 3 overlap in time; a withParam list over the bound is refused by name."""
    from tests.corpus import loop_param

    pipeline = tmp_path / "pipeline.yaml"
    compile_corpus(loop_param, base, pipeline)
    for jobs, overlap in (("3", True), ("1", False)):
        code, out, err = run(pipeline, tmp_path / f"work-{jobs}", {"count": 3}, capsys, "--jobs", jobs)
        assert code == 0, err
        assert json.loads(written(tmp_path / f"work-{jobs}", "make-list", "Output")) == [1, 2, 3]
        events = [line.split("] ", 1)[1] for line in err.splitlines() if "/square " in line]
        starts = [n for n, line in enumerate(events) if " start in " in line]
        ends = [n for n, line in enumerate(events) if " done in " in line]
        assert len(starts) == len(ends) == 3
        assert (max(starts) < min(ends)) is overlap, events
    code, out, err = run(pipeline, tmp_path / "work-big", {"count": 300}, capsys)
    assert code == 11 and "for-loop-1: 300 loop items, over the limit of 256" in err, err


def always_fails() -> None:
    print("trying", flush=True)
    raise SystemExit(3)


def sleeps(seconds: int) -> None:
    import time

    time.sleep(seconds)


def test_retries_and_deadlines_apply(base: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """kfp's set_retry(2) runs a failing step three times; set_timeout(2) kills a step at 2 s."""
    import time

    import kfp.compiler
    from kfp import dsl
    from kfp.components import create_component_from_func

    failing = create_component_from_func(always_fails, base_image=base)
    sleeping = create_component_from_func(sleeps, base_image=base)

    @dsl.pipeline(name="limits")
    def pipeline(which: str = "retry") -> None:
        with dsl.Condition(which == "retry"):
            failing().set_retry(2)
        with dsl.Condition(which == "deadline"):
            sleeping(60).set_timeout(2)

    path = tmp_path / "pipeline.yaml"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kfp.compiler.Compiler().compile(pipeline, str(path))
    code, out, err = run(path, tmp_path / "retry", {"which": "retry"}, capsys)
    assert code == 11
    assert err.count("| trying") == 3 and "retry 2 of 2" in err
    assert "step condition-1/always-fails failed with exit code 3 after" in err and "(3 tries)" in err
    started = time.monotonic()
    code, out, err = run(path, tmp_path / "deadline", {"which": "deadline"}, capsys)
    assert code == 11 and "step condition-2/sleeps ran past its activeDeadlineSeconds (2s) and was killed" in err
    assert time.monotonic() - started < 30
