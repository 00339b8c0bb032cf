"""Ordinary kfp 1.8 pipelines, written as their users write them, that `buildtool run` must run as kfp runs them.

The step functions are in `steps` (a project's `steps_module`). Each other module has `make_pipeline(images)`,
the pipeline function with its components on `images` (one image for every step, or a buildtool factory's
`img_name_map`); `ARGUMENTS`, the pipeline's arguments; `expected(arguments)`, each (task, output)'s file as
the component functions themselves compute it; and `LOCAL_CLIENT`, the outputs kfp's own `LocalClient`
(docker mode) produces, to compare with `buildtool run`'s (its comments say what LocalClient cannot run).
"""

from collections.abc import Callable, Mapping
from typing import Any

from kfp.components import create_component_from_func


def component(function: Callable[..., Any], images: str | Mapping[str, str]) -> Any:
    """`function`'s component, on one image for every step (`str`), or as a buildtool factory gets them: the
    `img_name_map`, {step function name: digest-pinned image}."""
    image = images if isinstance(images, str) else images[function.__name__]
    return create_component_from_func(function, base_image=image)
