"""Argo's `when` and `depends` expressions, as kfp 1.8 writes them, read by a small parser (never `eval`).

`when`: comparisons (`==`, `!=`, `<`, `<=`, `>`, `>=`) of numbers, quoted strings and `true`/`false`,
joined by `&&`, `||`, `!` and parentheses. A `{{...}}` placeholder is replaced *after* the expression is
tokenized, and its value is always one literal: a value holding `" || "1" == "1` stays a string and cannot
change the expression (Argo's text substitution would let it).

`depends`: task names, optionally `.Succeeded`, `.Failed`, `.Skipped`, `.Completed`, `.Errored`, joined the
same way.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ..errors import RunError

__all__ = ["MAX_EXPRESSION", "check_when", "depends_holds", "depends_tasks", "when_holds"]

MAX_EXPRESSION = 4096
_TOKEN = re.compile(
    r"""\s*(?:
    (?P<placeholder>\{\{\s*[^{}]*?\s*\}\})
  | (?P<string>"[^"\\{}]*(?:\{\{[^{}]*\}\}[^"\\{}]*)*"|'[^'\\{}]*(?:\{\{[^{}]*\}\}[^'\\{}]*)*')
  | (?P<number>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
  | (?P<op>&&|\|\||==|!=|<=|>=|<|>|!|\(|\))
  | (?P<word>[A-Za-z_][A-Za-z0-9_.-]*)
)""",
    re.VERBOSE,
)
_PLACEHOLDER = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?")
_RESULTS = ("Succeeded", "Failed", "Skipped", "Completed", "Errored")
_COMPARISONS = ("==", "!=", "<", "<=", ">", ">=")

Literal = float | str | bool


@dataclass(frozen=True)
class _Token:
    kind: str
    text: str


def _tokens(text: str, where: str) -> list[_Token]:
    if len(text) > MAX_EXPRESSION:
        raise RunError(f"{where}: {len(text)} characters, over the limit of {MAX_EXPRESSION}")
    tokens, position = [], 0
    while position < len(text):
        if text[position:].isspace():
            break
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            raise RunError(
                f"{where}: cannot read {text[position : position + 40]!r} in {text!r}; "
                "expected comparisons joined by &&, || and parentheses"
            )
        kind = match.lastgroup or ""
        tokens.append(_Token(kind, match[kind]))
        position = match.end()
    return tokens


class _Parser:
    """Recursive descent over the tokens; `atom` reads one operand or comparison."""

    def __init__(self, tokens: list[_Token], where: str, text: str, atom: Callable[[_Parser], bool]) -> None:
        self.tokens, self.where, self.text, self.atom, self.at = tokens, where, text, atom, 0

    def peek(self) -> _Token | None:
        return self.tokens[self.at] if self.at < len(self.tokens) else None

    def take(self) -> _Token:
        token = self.peek()
        if token is None:
            raise self.error("ends early")
        self.at += 1
        return token

    def error(self, problem: str) -> RunError:
        return RunError(f"{self.where}: {self.text!r} {problem}")

    def parse(self) -> bool:
        value = self.disjunction(0)
        if self.peek() is not None:
            raise self.error(f"has {self.peek().text!r} where the expression should end")  # type: ignore[union-attr]
        return value

    def disjunction(self, depth: int) -> bool:
        if depth > 50:
            raise self.error("nests too deep")
        return self.chain("||", self.conjunction, depth)

    def conjunction(self, depth: int) -> bool:
        return self.chain("&&", self.unary, depth)

    def chain(self, operator: str, operand: Callable[[int], bool], depth: int) -> bool:
        """`operand (operator operand)*`, every operand read (an error after a decided `||` still counts)."""
        value = operand(depth)
        while (token := self.peek()) is not None and token.text == operator:
            self.take()
            right = operand(depth)
            value = (value or right) if operator == "||" else (value and right)
        return value

    def unary(self, depth: int) -> bool:
        token = self.peek()
        if token is not None and token.kind == "op" and token.text == "!":
            self.take()
            return not self.unary(depth + 1)
        if token is not None and token.kind == "op" and token.text == "(":
            self.take()
            value = self.disjunction(depth + 1)
            if self.take().text != ")":
                raise self.error("misses a closing parenthesis")
            return value
        return self.atom(self)


def _literal(token: _Token, values: Mapping[str, str], parser: _Parser) -> Literal:
    def resolve(match: re.Match[str]) -> str:
        if match[1] not in values:
            raise parser.error(f"uses {{{{{match[1]}}}}}, which has no value here")
        return values[match[1]]

    if token.kind == "number":
        return float(token.text)
    if token.kind == "string":
        return _PLACEHOLDER.sub(resolve, token.text[1:-1])
    if token.kind == "placeholder":
        value = _PLACEHOLDER.sub(resolve, token.text)
        if _NUMBER.fullmatch(value.strip()):
            return float(value)
        if value in ("true", "false"):
            return value == "true"
        return value
    if token.kind == "word" and token.text in ("true", "false"):
        return token.text == "true"
    raise parser.error(f"has {token.text!r} where a number, a quoted string or a {{{{...}}}} value belongs")


def _compare(left: Literal, op: str, right: Literal, parser: _Parser) -> bool:
    if op in ("==", "!="):
        same = type(left) is type(right) and left == right
        return same if op == "==" else not same
    if isinstance(left, float) and isinstance(right, float):
        return {"<": left < right, "<=": left <= right, ">": left > right, ">=": left >= right}[op]
    raise parser.error(f"orders {left!r} {op} {right!r}: only numbers can be ordered")


def when_holds(text: str, values: Mapping[str, str], where: str) -> bool:
    """Whether the `when` expression `text` holds, its placeholders taken from `values` (Argo variable -> value)."""

    def atom(parser: _Parser) -> bool:
        left = _literal(parser.take(), values, parser)
        token = parser.peek()
        if token is None or token.text not in _COMPARISONS:
            if isinstance(left, bool):
                return left
            raise parser.error(f"has the value {left!r} where a comparison or true/false belongs")
        parser.take()
        return _compare(left, token.text, _literal(parser.take(), values, parser), parser)

    return _Parser(_tokens(text, where), where, text, atom).parse()


def check_when(text: str, where: str) -> None:
    """RunError if `text` is not a `when` expression this parser reads (its values are not needed)."""

    def operand(parser: _Parser) -> None:
        token = parser.take()
        if token.kind not in ("placeholder", "string", "number") and token.text not in ("true", "false"):
            raise parser.error(f"has {token.text!r} where a number, a quoted string or a {{{{...}}}} value belongs")

    def atom(parser: _Parser) -> bool:
        operand(parser)
        token = parser.peek()
        if token is not None and token.text in _COMPARISONS:
            parser.take()
            operand(parser)
        return True

    _Parser(_tokens(text, where), where, text, atom).parse()


def _depends_atom(token: _Token, parser: _Parser) -> tuple[str, str | None]:
    if token.kind != "word":
        raise parser.error(f"has {token.text!r} where a task name belongs")
    name, _, result = token.text.partition(".")
    if result and result not in _RESULTS:
        raise parser.error(f"asks for {result!r} of task {name}; local runs read {', '.join(_RESULTS)}")
    return name, result or None


def depends_tasks(text: str, where: str) -> set[str]:
    """The task names a `depends` expression mentions (it is checked as it is read)."""
    names: set[str] = set()

    def atom(parser: _Parser) -> bool:
        names.add(_depends_atom(parser.take(), parser)[0])
        return True

    _Parser(_tokens(text, where), where, text, atom).parse()
    return names


def depends_holds(text: str, states: Mapping[str, str], where: str) -> bool:
    """Whether `depends` holds for the finished tasks' `states` (succeeded, failed, skipped, omitted)."""

    def atom(parser: _Parser) -> bool:
        name, result = _depends_atom(parser.take(), parser)
        state = states.get(name)
        if result is None:  # Argo: `A` means A.Succeeded || A.Skipped
            return state in ("succeeded", "skipped")
        return {
            "Succeeded": state == "succeeded",
            "Failed": state == "failed",
            "Skipped": state == "skipped",
            "Completed": state in ("succeeded", "failed"),
            "Errored": False,
        }[result]

    return _Parser(_tokens(text, where), where, text, atom).parse()
