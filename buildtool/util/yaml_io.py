"""The one strict YAML reader for files buildtool is pointed at (the image map, compiled workflows).

Those files may have been edited by someone else, so reading one is bounded before it starts:
a size cap, UTF-8 only, no anchors or aliases (the alias bomb), no merge keys, no duplicate keys
(the last one would silently win), and caps on nesting depth and node count. libyaml parses twice,
once as an event stream for the checks and once to build the data, both in C.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import yaml

MAX_BYTES = 1_000_000  # the map is ~4 KB and a compiled pipeline ~30 KB; Kubernetes objects stay under ~1.5 MB
MAX_DEPTH = 100
MAX_NODES = 200_000

_Loader: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_MERGE = "tag:yaml.org,2002:merge"


class YamlProblem(ValueError):
    """Why a YAML file or text was refused: one line, without the path (the caller adds it)."""


def shown(value: object, limit: int = 120) -> str:
    """`value` for a one-line message: control characters escaped, long text cut."""
    text = value if isinstance(value, str) else repr(value)
    text = text.encode("unicode_escape").decode("ascii") if not text.isprintable() else text
    return text if len(text) <= limit else text[:limit] + "..."


def _where(exc: yaml.MarkedYAMLError) -> str:
    mark = exc.problem_mark or exc.context_mark
    return f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""


class _StrictLoader(_Loader):  # type: ignore[misc]
    """Safe loader that refuses duplicate and merge keys."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == _MERGE:
                raise YamlProblem(f"merge key '<<' at line {key_node.start_mark.line + 1}; write the keys out")
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
            except TypeError:
                raise YamlProblem(f"unhashable key at line {key_node.start_mark.line + 1}") from None
            if duplicate:
                raise YamlProblem(
                    f"duplicate key {shown(key)!s} at line {key_node.start_mark.line + 1}; each key may appear once"
                )
            seen.add(key)
        mapping: dict[Any, Any] = super().construct_mapping(node, deep=deep)
        return mapping


def _line(event: yaml.Event) -> int:
    return event.start_mark.line + 1 if event.start_mark is not None else 0


def _check_events(text: str, max_depth: int, max_nodes: int) -> None:
    """Refuse anchors, aliases, deep nesting and too many nodes, before anything is built."""
    depth = nodes = 0
    for event in yaml.parse(text, Loader=_Loader):
        if isinstance(event, yaml.AliasEvent):
            raise YamlProblem(
                f"alias *{shown(event.anchor, 40)} at line {_line(event)}; anchors and aliases are not accepted"
            )
        if isinstance(event, yaml.NodeEvent):
            if event.anchor is not None:
                raise YamlProblem(
                    f"anchor &{shown(event.anchor, 40)} at line {_line(event)}; anchors and aliases are not accepted"
                )
            nodes += 1
            if nodes > max_nodes:
                raise YamlProblem(f"more than {max_nodes} nodes; not a file buildtool writes")
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > max_depth:
                raise YamlProblem(f"nested deeper than {max_depth} levels at line {_line(event)}")
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def parse(text: str, *, max_depth: int = MAX_DEPTH, max_nodes: int = MAX_NODES) -> Any:
    """One YAML document (JSON included), strictly; YamlProblem if refused."""
    if len(text) > MAX_BYTES:
        raise YamlProblem(f"{len(text)} characters, more than the {MAX_BYTES} accepted")
    try:
        _check_events(text, max_depth, max_nodes)
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        problem = shown(" ".join(part for part in (exc.context, exc.problem) if part) or "parse error")
        raise YamlProblem(f"not valid YAML: {problem}{_where(exc)}") from None
    except yaml.YAMLError as exc:
        raise YamlProblem(f"not valid YAML: {shown(str(exc).splitlines()[0] if str(exc) else 'parse error')}") from None
    except RecursionError:
        raise YamlProblem("nested too deeply to read") from None


def read_text(path: Path, *, max_bytes: int = MAX_BYTES) -> str:
    """The UTF-8 text of a regular file of at most `max_bytes`; FileNotFoundError if missing, else YamlProblem."""
    return decode(read_bytes(path, max_bytes=max_bytes))


def read_bytes(path: Path, *, max_bytes: int = MAX_BYTES) -> bytes:
    """The bytes of a regular file of at most `max_bytes`; FileNotFoundError if missing, else YamlProblem."""
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):
            raise YamlProblem("not a regular file")
        if info.st_size > max_bytes:
            raise YamlProblem(f"{info.st_size} bytes, more than the {max_bytes} accepted")
        with open(path, "rb") as handle:
            data = handle.read(max_bytes + 1)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise YamlProblem(f"cannot read: {exc.strerror or exc.__class__.__name__}") from None
    if len(data) > max_bytes:  # it grew after the stat
        raise YamlProblem(f"more than the {max_bytes} bytes accepted")
    return data


def decode(data: bytes) -> str:
    """`data` as UTF-8 text; YamlProblem naming the first byte that is not."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise YamlProblem(f"not UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start})") from None


def load(path: Path, *, max_bytes: int = MAX_BYTES) -> Any:
    """read_text, then parse."""
    return parse(read_text(path, max_bytes=max_bytes))
