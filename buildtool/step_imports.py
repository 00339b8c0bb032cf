"""Which top-level modules each pipeline step imports, and the check that its image has them.

kfp serializes a step function's source into the pipeline and runs it in the
step's image, so the imports inside the function body are exactly what the
image must provide. Found with `ast`, never by running the function.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import BuildError, ConfigError

if TYPE_CHECKING:
    from .config import Config

# Runs inside the image, in one container: `pip check` in a subprocess while the
# modules named on the command line are imported; prints both results as JSON.
PROBE = """\
import importlib, json, subprocess, sys
pip = subprocess.Popen([sys.executable, "-m", "pip", "check"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
failed = {}
for name in sys.argv[1:]:
    try:
        importlib.import_module(name)
    except BaseException as exc:
        failed[name] = f"{type(exc).__name__}: {exc}"
pip_output = pip.communicate()[0].decode(errors="replace")
print("IMPORT-PROBE " + json.dumps({"imports": failed, "pip_check": [pip.returncode, pip_output[-2000:]]}))
"""


@dataclass(frozen=True)
class ProbeResult:
    failed_imports: Mapping[str, str]  # module -> error
    pip_check_code: int
    pip_check_output: str


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
            raise ConfigError(f"{config_path}: [tool.buildtool] steps_module: {path} has no function {step!r} "
                              "(each step's function is named like its step)")
        result[step] = sorted(imported_modules(ast.unparse(functions[step])))
    return result


def for_config(config: Config) -> dict[str, list[str]]:
    """Step -> modules its function imports, for every step the configuration's images serve."""
    steps = sorted(i.step for i in config.images if i.step)
    return step_modules(config.steps_module, steps, config.root, config.path)


def probe_command(modules: list[str]) -> list[str]:
    return ["python3", "-c", PROBE, *modules]


def parse_probe(output: str) -> ProbeResult:
    """Parse the probe's output; BuildError if it printed nothing usable (no python3 in the image, say)."""
    for line in output.splitlines():
        if line.startswith("IMPORT-PROBE "):
            data = json.loads(line.removeprefix("IMPORT-PROBE "))
            code, pip_output = data["pip_check"]
            return ProbeResult(data["imports"], int(code), pip_output)
    raise BuildError(f"the import check printed no result; output was: {output.strip()[-500:]}")


def describe_failures(step: str, image: str, failures: Mapping[str, str]) -> str:
    parts = []
    for module, error in sorted(failures.items()):
        if error.startswith("ModuleNotFoundError"):
            parts.append(f"step {step} imports {module}: not installed in image {image}")
        else:
            parts.append(f"step {step} imports {module}: fails in image {image} ({error})")
    return "; ".join(parts)
