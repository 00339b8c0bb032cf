"""The DAG semantics of `run_exec` on hand-written Argo workflows, with a stand-in engine: no containers.

The stand-in exits with the code its command names, so the outcome depends on the workflow only, whatever
order the threads start in.
"""

import pytest

from buildtool.dev import run_exec, run_workflow
from buildtool.engine import ContainerResult

IMAGE = "127.0.0.1:5000/x/step@sha256:" + "1" * 64


class ExitingEngine:
    """`sh -c 'exit N'` ends with N; each call is recorded by the task's node name (its only argument)."""

    def __init__(self):
        self.ran = []

    def image_id(self, ref):
        return "sha256:" + "0" * 64

    def call(self, image, command, **options):
        self.ran.append(command[-1])
        return ContainerResult(int(command[2].split()[-1]), "")


def workflow(tasks, **spec):
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {"generateName": "t-"},
        "spec": {
            "entrypoint": "main",
            "arguments": {"parameters": []},
            **spec,
            "templates": [
                {"name": "main", "dag": {"tasks": tasks}},
                {
                    "name": "step",
                    "inputs": {"parameters": [{"name": "code"}, {"name": "me"}]},
                    "container": {
                        "image": IMAGE,
                        "command": ["sh", "-c", "exit {{inputs.parameters.code}}", "{{inputs.parameters.me}}"],
                    },
                },
            ],
        },
    }


def task(name, code, **fields):
    return {
        "name": name,
        "template": "step",
        **fields,
        "arguments": {"parameters": [{"name": "code", "value": str(code)}, {"name": "me", "value": name}]},
    }


def run(document, tmp_path):
    engine = ExitingEngine()
    plan = run_workflow.plan_checked(document, [], {}, None)
    outcome = run_exec.execute_run(plan, engine, tmp_path / "work", jobs=2)
    return {n.node: n.state for n in outcome.nodes}, sorted(engine.ran), outcome


def test_dependencies_depends_and_fail_fast(tmp_path):
    states, ran, outcome = run(
        workflow(
            [
                task("a", 0),
                task("b", 1, dependencies=["a"]),
                task("after-b", 0, dependencies=["b"]),  # needs b to succeed: never starts
                task("on-failure", 0, depends="b.Failed"),  # handles b's failure: runs
                task("on-success", 0, depends="b.Succeeded"),  # does not hold
            ]
        ),
        tmp_path,
    )
    assert states == {
        "a": "succeeded",
        "b": "failed",
        "after-b": "omitted",
        "on-failure": "succeeded",
        "on-success": "omitted",
    }
    assert ran == ["a", "b", "on-failure"]
    assert outcome.failure.startswith("step b failed with exit code 1")


def test_a_skipped_task_lets_its_dependents_run(tmp_path):
    states, ran, outcome = run(
        workflow(
            [
                task("a", 0),
                task("skipped", 0, when="1 > 2", dependencies=["a"]),
                task("after", 0, dependencies=["skipped"]),
                task("strict", 0, depends="skipped.Succeeded"),
            ]
        ),
        tmp_path,
    )
    assert states == {"a": "succeeded", "skipped": "skipped", "after": "succeeded", "strict": "omitted"}
    assert ran == ["a", "after"] and outcome.failure is None


def test_loop_items_and_the_exit_handler(tmp_path):
    document = workflow([task("loop", "{{item}}", withItems=[0, 0, 0])], onExit="bye")
    document["spec"]["templates"].append(
        {"name": "bye", "container": {"image": IMAGE, "command": ["sh", "-c", "exit 0", "{{workflow.status}}"]}}
    )
    states, ran, outcome = run(document, tmp_path)
    assert states == {
        "loop(0)": "succeeded",
        "loop(1)": "succeeded",
        "loop(2)": "succeeded",
        "loop": "succeeded",
        "bye": "succeeded",
    }
    assert ran == ["Succeeded", "loop", "loop", "loop"]


@pytest.mark.parametrize(
    ("items", "fragment"),
    [
        ("[1, [2]]", "loop item [2] is not a value or a mapping of values"),
        ('{"a": 1}', "the loop's items are a dict, not a list"),
        ("not json", "is not a JSON list"),
    ],
)
def test_with_param_fails_its_task_on_a_bad_list(tmp_path, items, fragment):
    document = workflow([task("loop", "{{item}}", withParam="{{workflow.parameters.items}}")])
    document["spec"]["arguments"]["parameters"] = [{"name": "items", "value": items}]
    states, ran, outcome = run(document, tmp_path)
    assert states == {"loop": "failed"} and ran == []
    assert fragment in outcome.failure and outcome.failure.startswith("task loop")


def test_dry_run_of_a_kfp_condition_shows_run_time_values_as_written(tmp_path, capsys):
    """The plan of kfp's own output (tests/corpus/condition.py): each branch once, flip's value still {{...}}."""
    import warnings

    import kfp.compiler

    from buildtool import cli
    from tests.corpus import condition

    path = tmp_path / "pipeline.yaml"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kfp.compiler.Compiler().compile(condition.make_pipeline(IMAGE), str(path))
    assert (
        cli.main(
            [
                "--config",
                str(tmp_path / "absent.toml"),
                "run",
                str(path),
                "--dry-run",
                "-p",
                "number=3",
                "--allow-host",
                "127.0.0.1:8080",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert [line.split(":")[0] for line in out.splitlines() if line[:1].isdigit()] == [
        "1. flip",
        "2. condition-1/describe",
        "3. condition-2/describe-2",
    ]
    assert "   parameters: number=3" in out
    assert "   parameters: flip-Output={{tasks.flip.outputs.parameters.flip-Output}}" in out
    assert "network: steps reach only 127.0.0.1:8080 (forwarded); nothing else" in out
    assert not (tmp_path / "work").exists()
