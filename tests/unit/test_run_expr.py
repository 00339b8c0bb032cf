"""The `when` and `depends` parser: kfp 1.8's expressions, and values that try to change the expression."""

import pytest

from buildtool.dev.run_expr import check_when, depends_holds, depends_tasks, when_holds
from buildtool.errors import RunError

OUT = "tasks.flip.outputs.parameters.flip-Output"


@pytest.mark.parametrize(
    ("expression", "value", "holds"),
    [
        # As kfp 1.8 writes dsl.Condition: numbers bare, strings quoted.
        ("{{tasks.flip.outputs.parameters.flip-Output}} > 10", "24", True),
        ("{{tasks.flip.outputs.parameters.flip-Output}} <= 10", "24", False),
        ("{{tasks.flip.outputs.parameters.flip-Output}} == 2.5", "2.50", True),
        ("{{tasks.flip.outputs.parameters.flip-Output}} != -3", "-3", False),
        ('"{{tasks.flip.outputs.parameters.flip-Output}}" == "heads"', "heads", True),
        ('"{{tasks.flip.outputs.parameters.flip-Output}}" == "heads"', "tails", False),
        ('"{{tasks.flip.outputs.parameters.flip-Output}}" != "heads"', "tails", True),
        ("'{{tasks.flip.outputs.parameters.flip-Output}}' == 'a b'", "a b", True),
        # && binds tighter than ||; parentheses and ! as govaluate reads them.
        (
            "{{tasks.flip.outputs.parameters.flip-Output}} > 1 && {{tasks.flip.outputs.parameters.flip-Output}} < 5",
            "3",
            True,
        ),
        (
            "{{tasks.flip.outputs.parameters.flip-Output}} > 5 || {{tasks.flip.outputs.parameters.flip-Output}} < 2",
            "3",
            False,
        ),
        ("1 == 2 && 1 == 1 || 2 == 2", "0", True),
        ("1 == 2 && (1 == 1 || 2 == 2)", "0", False),
        ("!(1 == 2)", "0", True),
        ("{{tasks.flip.outputs.parameters.flip-Output}} == true", "true", True),
        # A string and a number are never equal.
        ('"{{tasks.flip.outputs.parameters.flip-Output}}" == 3', "3", False),
        # A value is one literal: quotes and operators in it do not reach the expression.
        ('"{{tasks.flip.outputs.parameters.flip-Output}}" == "heads"', 'x" || "1" == "1', False),
        ("{{tasks.flip.outputs.parameters.flip-Output}} == 1", "0 || 1 == 1", False),
    ],
)
def test_when(expression, value, holds):
    assert when_holds(expression, {OUT: value}, "task t: when") is holds
    check_when(expression, "task t: when")


@pytest.mark.parametrize(
    ("expression", "fragment"),
    [
        ("__import__('os').system('id') == 0", "expected comparisons joined by &&, || and parentheses"),
        ("os == 0", "where a number, a quoted string or a {{...}} value belongs"),
        ("1 == ", "ends early"),
        ("(1 == 1", "ends early"),
        ("1 == 1)", "where the expression should end"),
        ("1 == 1 ; 2", "cannot read"),
        ('{{tasks.flip.outputs.parameters.flip-Output}} < "b"', "only numbers can be ordered"),
        ("{{tasks.other.outputs.parameters.x}} == 1", "has no value here"),
        ("(" * 60 + "1 == 1" + ")" * 60, "nests too deep"),
        ("1 == 1 && " * 500 + "1 == 1", "over the limit"),
        ("abc", "where a number"),
    ],
)
def test_when_refuses(expression, fragment):
    with pytest.raises(RunError, match=None) as caught:
        when_holds(expression, {OUT: "a"}, "task t: when")
    assert fragment in str(caught.value) and str(caught.value).startswith("task t: when")


@pytest.mark.parametrize(
    ("expression", "states", "holds"),
    [
        ("a", {"a": "succeeded"}, True),
        ("a", {"a": "skipped"}, True),
        ("a", {"a": "failed"}, False),
        ("a.Failed", {"a": "failed"}, True),
        ("a.Succeeded && b.Skipped", {"a": "succeeded", "b": "skipped"}, True),
        ("a.Succeeded && b.Skipped", {"a": "succeeded", "b": "succeeded"}, False),
        ("(a.Failed || b.Failed) && c", {"a": "succeeded", "b": "failed", "c": "succeeded"}, True),
        ("a.Completed", {"a": "failed"}, True),
        ("!a.Succeeded", {"a": "omitted"}, True),
    ],
)
def test_depends(expression, states, holds):
    assert depends_holds(expression, states, "task t: depends") is holds
    assert depends_tasks(expression, "task t: depends") == set(states)


@pytest.mark.parametrize("expression", ["a.Exploded", "a ==", "'a'", "a && ", "{{x}}"])
def test_depends_refuses(expression):
    with pytest.raises(RunError, match="task t: depends"):
        depends_tasks(expression, "task t: depends")
