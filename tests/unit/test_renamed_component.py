"""A component its pipeline renames (`op.component_spec.name = ...`) is still its step: the real kfp compiler.

kfp records the new name in the component_spec annotation, but the program it wrote for the function
still calls the function by name; that call is what identifies the step, and only when it is one.
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path
from typing import Any

import pytest
import yaml

from buildtool.gate import verify
from buildtool.gate.verify import steps

STEPS = {
    step: f"127.0.0.1:5000/corpus/{step}:in-{'0' * 16}@sha256:{digit * 64}"
    for step, digit in (("divide", "1"), ("add", "2"))
}


@pytest.fixture(scope="module")
def workflow(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """tests/corpus/named_tuple: `divide`'s component renamed `divmod`, `add` used twice."""
    import kfp.compiler

    from tests.corpus import named_tuple

    path = Path(tmp_path_factory.mktemp("renamed")) / "pipeline.yaml"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kfp.compiler.Compiler().compile(named_tuple.make_pipeline(STEPS), str(path))
    loaded: dict[str, Any] = yaml.safe_load(path.read_text())
    return loaded


def template(workflow: dict[str, Any], name: str) -> dict[str, Any]:
    [found] = [t for t in workflow["spec"]["templates"] if t["name"] == name]
    return found


def test_a_renamed_component_resolves_to_the_function_its_program_calls(workflow: dict[str, Any]) -> None:
    assert steps._spec_name(template(workflow, "divmod")) == "divmod"  # no step's component name
    assert verify.template_steps(workflow, STEPS) == {"divmod": "divide", "add": "add", "add-2": "add"}
    assert verify.pin_problems(workflow, STEPS) == []


def program(workflow: dict[str, Any], name: str) -> list[str]:
    command: list[str] = template(workflow, name)["container"]["command"]
    return command


@pytest.mark.parametrize(
    ("change", "why"),
    [
        (
            lambda p: p.replace(
                "_outputs = divide(**_parsed_args)", "_outputs = divide(**_parsed_args)\n_outputs = add(**_parsed_args)"
            ),
            "a program calling two step functions",
        ),
        (
            lambda p: p.replace("_outputs = divide(**_parsed_args)", "_outputs = divide_all(**_parsed_args)"),
            "a function that is no step",
        ),
        (
            lambda p: p.replace("_outputs = divide(**_parsed_args)", "_outputs = divide(**_parsed_args) # x"),
            "a call kfp would not write",
        ),
        (lambda p: p.replace("_outputs = divide(**_parsed_args)", ""), "no call at all"),
    ],
)
def test_a_renamed_component_is_no_step_unless_its_program_names_exactly_one(
    workflow: dict[str, Any], change: Any, why: str
) -> None:
    edited = copy.deepcopy(workflow)
    command = program(edited, "divmod")
    command[:] = [change(part) for part in command]
    assert "divmod" not in verify.template_steps(edited, STEPS), why
    problems = verify.pin_problems(edited, STEPS)
    assert any(p.startswith("template divmod: container.image:") and "serves no step" in p for p in problems), why
    assert "step divide: in the image map but no template of the workflow runs it" in problems, why


def test_the_recorded_component_name_still_comes_first(workflow: dict[str, Any]) -> None:
    """A template whose annotation names a step is that step, whatever its program calls."""
    edited = copy.deepcopy(workflow)
    command = program(edited, "add-2")
    command[:] = [
        part.replace("_outputs = add(**_parsed_args)", "_outputs = divide(**_parsed_args)") for part in command
    ]
    assert verify.template_steps(edited, STEPS)["add-2"] == "add"
