"""Which top-level modules each pipeline step imports, and the check that its image has them.

kfp serializes a step function's source into the pipeline and runs it in the
step's image, so the imports inside the function body are exactly what the
image must provide. Found with `ast`, never by running the function.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import json
import textwrap
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..check import import_probe, pip_check_cache
from ..errors import BuildError, ConfigError

if TYPE_CHECKING:
    from ..config import Config


@dataclass(frozen=True)
class ProbeResult:
    failed_imports: Mapping[str, str]  # module -> error
    pip_check_code: int | None  # None: skipped, the fingerprint had passed before
    pip_check_output: str
    fingerprint: str | None  # of the image's distributions (import_probe.fingerprint); None if not computable

    @property
    def pip_check_skipped(self) -> bool:
        return self.pip_check_code is None


def imported_modules(source: str) -> set[str]:
    """Top-level names of the absolute imports anywhere in `source` (relative imports are skipped)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(textwrap.dedent(source))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def _module_file(module_name: str, root: Path) -> Path | None:
    relative = Path(*module_name.split("."))
    for candidate in (root / relative.with_suffix(".py"), root / relative / "__init__.py"):
        if candidate.is_file():
            return candidate
    spec = importlib.util.find_spec(module_name) if "." not in module_name else None
    return Path(spec.origin) if spec and spec.origin and spec.origin.endswith(".py") else None


def step_modules(module_name: str, steps: list[str], root: Path, config_path: Path) -> dict[str, list[str]]:
    """Step -> sorted top-level modules imported by its function (named like the step) in `module_name`.

    Read from the source file, not imported: no module code runs, and a changed file is always read anew.
    """
    path = _module_file(module_name, root)
    if path is None:
        raise ConfigError(f"{config_path}: [tool.buildtool] steps_module: no module {module_name!r} under {root}")
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    functions = {node.name: node for node in tree.body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}
    result = {}
    for step in steps:
        if step not in functions:
            raise ConfigError(
                f"{config_path}: [tool.buildtool] steps_module: {path} has no function {step!r} "
                "(each step's function is named like its step)"
            )
        result[step] = sorted(imported_modules(ast.unparse(functions[step])))
    return result


def for_config(config: Config) -> dict[str, list[str]]:
    """Step -> modules its function imports, for every step the configuration's images serve."""
    steps = sorted(i.step for i in config.images if i.step)
    return step_modules(config.steps_module, steps, config.root, config.path)


@functools.cache
def _probe_source() -> str:
    return Path(import_probe.__file__).read_text(encoding="utf-8")


def probe_command(modules: list[str], known: Collection[str] = ()) -> list[str]:
    """The command that checks an image (import_probe): `known` are fingerprints that already passed pip check."""
    return ["python3", "-c", _probe_source(), ",".join(sorted(known)), *modules]


def _probe_data(output: str) -> object:
    # The last marker line: the probe prints its own after every step module has run (and maybe printed).
    lines = [line for line in output.splitlines() if line.startswith(import_probe.MARKER)]
    if not lines:
        raise BuildError(f"the import check printed no result; output was: {output.strip()[-500:]}")
    try:
        return json.loads(lines[-1].removeprefix(import_probe.MARKER))
    except (json.JSONDecodeError, RecursionError):
        raise BuildError(f"the import check printed a malformed result: {lines[-1][:300]}") from None


def parse_probe(output: str, known: Collection[str] = ()) -> ProbeResult:
    """Parse the probe's output; BuildError if it printed nothing usable (no python3 in the image, say), or
    claims to have skipped pip check for a fingerprint that was not among the `known` ones it was given."""
    data = _probe_data(output)
    malformed = BuildError(f"the import check printed a malformed result: {str(data)[:300]}")
    if not isinstance(data, dict):
        raise malformed
    imports, fingerprint, pip_check = data.get("imports"), data.get("fingerprint"), data.get("pip_check")
    if not isinstance(imports, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in imports.items()):
        raise malformed
    if fingerprint is not None and not pip_check_cache.is_fingerprint(fingerprint):
        raise malformed
    if pip_check is None:
        if fingerprint is None or fingerprint not in known:
            raise BuildError(
                "the import check says it skipped pip check for distributions not known to pass it "
                f"(fingerprint {fingerprint}): that result is not the check's own; does a step "
                f"module print lines starting with {import_probe.MARKER.strip()!r}?"
            )
        return ProbeResult(imports, None, "", fingerprint)
    if (
        not isinstance(pip_check, list)
        or len(pip_check) != 2
        or not isinstance(pip_check[0], int)
        or isinstance(pip_check[0], bool)
        or not isinstance(pip_check[1], str)
    ):
        raise malformed
    return ProbeResult(imports, pip_check[0], pip_check[1], fingerprint)


def describe_failures(step: str, image: str, failures: Mapping[str, str]) -> str:
    parts = []
    for module, error in sorted(failures.items()):
        if error.startswith("ModuleNotFoundError"):
            parts.append(f"step {step} imports {module}: not installed in image {image}")
        else:
            parts.append(f"step {step} imports {module}: fails in image {image} ({error})")
    return "; ".join(parts)
