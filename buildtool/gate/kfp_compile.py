"""The pipeline factory and kfp 1.8's compiler: import the project's factory, call it with the step images,
and compile the result in memory. The one module that runs kfp's compiler; it writes nothing.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import logging
import sys
import sysconfig
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, cast

from ..config import Config
from ..errors import CompileError

log = logging.getLogger(__name__)


def load_factory(config: Config) -> Callable[..., Callable[..., Any]]:
    """Import the configured `module:function` from the project folder."""
    module_name, _, attribute = config.pipeline.partition(":")
    root = str(config.root)
    sys.path.insert(0, root)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise CompileError(f"{config.path}: [tool.buildtool] pipeline: cannot import {module_name!r}: {exc}") from None
    finally:
        sys.path.remove(root)
    factory: object = getattr(module, attribute, None)
    if not callable(factory):
        raise CompileError(f"{config.path}: [tool.buildtool] pipeline: {module_name} has no function {attribute!r}")
    return cast("Callable[..., Callable[..., Any]]", factory)  # the user's pipeline factory: untyped by nature


def factory_keywords(factory: Callable[..., Any], config: Config) -> dict[str, Any]:
    """The optional keywords (image_pull_policy, credentials) that `factory` declares, and only those.

    The contract is `make_pipeline(img_name_map)`; a factory that names one of these settings (or takes
    **kwargs) gets it, so a pipeline with settings of its own keeps them.
    """
    offered = {"image_pull_policy": config.image_pull_policy, "credentials": config.credentials}
    try:
        parameters = inspect.signature(factory).parameters
    except (TypeError, ValueError):  # a builtin or C callable: give it the map alone
        return {}
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return offered
    return {
        name: value
        for name, value in offered.items()
        if name in parameters and parameters[name].kind is not inspect.Parameter.POSITIONAL_ONLY
    }


def with_pull_policy(pipeline_func: Callable[..., Any], policy: str) -> Callable[..., Any]:
    """`pipeline_func`, with buildtool's pull policy set on every container task by kfp's own mechanism.

    The op transformer joins the pipeline's own PipelineConf (whatever the pipeline set there stays),
    and runs when kfp turns the tasks into templates, after the pipeline function returned.
    """
    from kfp import dsl

    def transformer(op: Any) -> Any:
        if isinstance(op, dsl.ContainerOp):
            op.container.set_image_pull_policy(policy)
        return op

    @functools.wraps(pipeline_func)
    def pipeline(*args: Any, **kwargs: Any) -> Any:
        result = pipeline_func(*args, **kwargs)
        dsl.get_pipeline_conf().add_op_transformer(transformer)
        return result

    return pipeline


def _is_library(module: object) -> bool:
    """Whether `module` comes from the standard library or an installed distribution (or is buildtool)."""
    origin = getattr(module, "__file__", None)
    if getattr(module, "__name__", "").split(".")[0] == __name__.split(".")[0]:
        return True
    if origin is None:
        return False
    path = Path(origin).resolve()
    paths = sysconfig.get_paths()
    return any(
        path.is_relative_to(Path(paths[key]).resolve()) for key in ("stdlib", "platstdlib", "purelib", "platlib")
    )


def _fresh_import(config: Config) -> None:
    """Forget the project's pipeline and steps modules, so the factory is imported from the files as they are now
    (in one process, another project's same-named package, or this one before an edit, may be loaded)."""
    tops = {config.pipeline.partition(":")[0].split(".")[0], config.steps_module.split(".")[0]}
    for top in tops:
        if top in sys.modules and _is_library(sys.modules[top]):
            continue  # a library of the same name stays as it is
        for name in [n for n in sys.modules if n.split(".")[0] == top]:
            del sys.modules[name]


def create_workflow(config: Config, steps: Mapping[str, str]) -> dict[str, Any]:
    """The workflow kfp 1.8 compiles from the factory and `steps`, as a dict (nothing written)."""
    _fresh_import(config)
    factory = load_factory(config)
    import kfp.compiler  # heavy: imported only when compiling

    try:
        pipeline_func = factory(dict(steps), **factory_keywords(factory, config))
    except Exception as exc:
        raise CompileError(
            f"{config.pipeline}: building the pipeline failed: {exc.__class__.__name__}: {exc}"
        ) from None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            workflow: dict[str, Any] = kfp.compiler.Compiler().create_workflow(
                with_pull_policy(pipeline_func, config.image_pull_policy)
            )
        except Exception as exc:
            raise CompileError(f"kfp could not compile {config.pipeline}: {exc.__class__.__name__}: {exc}") from None
    for warning in caught:
        log.debug("kfp: %s", warning.message)
    return workflow


def render(workflow: Mapping[str, Any]) -> str:
    """The workflow as kfp writes it (kfp's own YAML dump)."""
    import kfp.compiler

    text: str = kfp.compiler.Compiler._write_workflow(dict(workflow))
    return text
