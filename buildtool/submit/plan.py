"""What `submit` will do, decided without a network: names, parameters, and which objects to create or reuse.

`local()` reads only the verified workflow and the command line; `decide()` adds what the server holds
(looked up by the caller through kfp_api) and says, for the pipeline and the version, "create" or "reuse".
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError
from ..platform_params import ENV_PARAMETERS, SECRET_PARAMETERS

PIPELINE_SPEC = "pipelines.kubeflow.org/pipeline_spec"
MAX_NAME = 128  # KFP stores names in VARCHAR(255) columns; half of that leaves room for a suffix
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]*$")
_PARAM = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Local:
    """What the file and the command line decide."""

    pipeline_name: str
    version_name: str
    sha256: str
    declared: Mapping[str, str | None]  # every parameter the pipeline declares, with its default (None: required)
    parameters: Mapping[str, str]  # what the run gets: the -p values only (the server fills the defaults)
    secrets_declared: tuple[str, ...]  # access_key/secret_key when the pipeline takes them as parameters

    def shown_parameters(self) -> str:
        """The run's parameters for the terminal: secret ones as ***."""
        return ", ".join(
            f"{k}={'***' if k in SECRET_PARAMETERS else _escaped(v)}" for k, v in sorted(self.parameters.items())
        )


def _escaped(value: str) -> str:
    """A value on one line: a newline in a -p value must not forge an output line."""
    return value.encode("unicode_escape", "backslashreplace").decode("ascii")


@dataclass(frozen=True)
class Decision:
    """For the pipeline and for the version: "create" or "reuse", and why."""

    pipeline: str
    version: str
    because: str


def content_name(pipeline_name: str, data: bytes) -> str:
    """`<pipeline>-<first 12 hex of the sha256 of the file>`: the same bytes always get the same version name."""
    return f"{_slug(pipeline_name)}-{hashlib.sha256(data).hexdigest()[:12]}"


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "pipeline"


def own_name(workflow: Mapping[str, Any]) -> str:
    """The pipeline's name as kfp compiled it (its pipeline_spec annotation), else the workflow's generateName."""
    metadata = workflow.get("metadata")
    metadata = metadata if isinstance(metadata, dict) else {}
    annotations = metadata.get("annotations")
    if isinstance(annotations, dict) and isinstance(annotations.get(PIPELINE_SPEC), str):
        try:
            spec = json.loads(annotations[PIPELINE_SPEC])
        except ValueError:
            spec = None
        if isinstance(spec, dict) and isinstance(spec.get("name"), str) and spec["name"].strip():
            return _slug(spec["name"])
    generated = metadata.get("generateName") or metadata.get("name")
    if isinstance(generated, str) and generated.strip("-"):
        return _slug(generated)
    return "pipeline"


def declared_parameters(workflow: Mapping[str, Any]) -> dict[str, str | None]:
    """spec.arguments.parameters: name -> default (None when the pipeline gives none: the run must)."""
    spec = workflow.get("spec")
    arguments = spec.get("arguments") if isinstance(spec, dict) else None
    items = arguments.get("parameters") if isinstance(arguments, dict) else None
    declared: dict[str, str | None] = {}
    for item in items if isinstance(items, list) else []:
        if isinstance(item, dict) and isinstance(item.get("name"), str):
            value = item.get("value")
            declared[item["name"]] = None if value is None else str(value)
    return declared


def check_name(option: str, value: str) -> str:
    if not value or len(value) > MAX_NAME or not _NAME.match(value):
        shown = value.encode("unicode_escape").decode("ascii")[:80]
        raise ConfigError(
            f"{option} {shown!r}: expected 1 to {MAX_NAME} letters, digits, spaces, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return value


def parse_parameters(
    pairs: Sequence[str], declared: Mapping[str, str | None], environment: Mapping[str, str]
) -> dict[str, str]:
    """-p NAME=VALUE, checked against what the pipeline declares: an unknown or a missing required one is refused.

    access_key and secret_key may come from PLATFORM_ACCESS_KEY / PLATFORM_SECRET_KEY, as for `buildtool run`.
    """
    given: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        shown = name.encode("unicode_escape").decode("ascii")[:80]
        if not sep or not _PARAM.match(name):
            raise ConfigError(f"-p {shown!r}: expected NAME=VALUE with NAME a parameter of the pipeline")
        if name not in declared:
            raise ConfigError(
                f"-p {shown}: the pipeline declares no such parameter (it has: {', '.join(sorted(declared)) or 'none'})"
            )
        given[name] = value
    for name, variable in ENV_PARAMETERS.items():
        if name in declared and name not in given and environment.get(variable):
            given[name] = environment[variable]
    missing = sorted(name for name, default in declared.items() if default is None and name not in given)
    if missing:
        raise ConfigError(
            f"the pipeline needs {', '.join(missing)}, which has no default: pass "
            + " ".join(f"-p {name}=..." for name in missing)
        )
    return given


def local(
    workflow: Mapping[str, Any],
    data: bytes,
    *,
    pipeline_name: str | None,
    version_name: str | None,
    pairs: Sequence[str],
    environment: Mapping[str, str],
    run: bool,
) -> Local:
    name = check_name("--pipeline-name", pipeline_name) if pipeline_name is not None else own_name(workflow)
    version = check_name("--version-name", version_name) if version_name is not None else content_name(name, data)
    declared = declared_parameters(workflow)
    parameters = parse_parameters(pairs, declared, environment) if run else {}
    if pairs and not run:
        raise ConfigError("-p gives a run's parameters: add --run, or leave -p out to publish only")
    secrets = tuple(name for name in SECRET_PARAMETERS if name in declared)
    return Local(name, version, hashlib.sha256(data).hexdigest(), declared, parameters, secrets)


def decide(pipeline_found: bool, version_found: bool) -> Decision:
    if not pipeline_found:
        return Decision("create", "create", "the server has no pipeline of that name")
    if not version_found:
        return Decision("reuse", "create", "the pipeline has no version of that name")
    return Decision("reuse", "reuse", "the pipeline already has this version: nothing to upload")
