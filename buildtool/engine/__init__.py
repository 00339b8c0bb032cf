"""The Docker engine, through the docker SDK: the only package that talks to it.

`Engine` is one connection (connection.py, where the engine is: endpoint.py) with its images (images.py: build,
inspect, pull, tag, push) and its containers (containers.py: `call` and long-lived ones). A build context is
listed and sent by docker-py's own `.dockerignore` matcher (build_context.py); layers.py pairs an image's
layers with the sizes its history reports.
"""

from __future__ import annotations

from .build_context import BuildSources, context_paths, context_tar
from .containers import Bind, ContainerMethods, ContainerResult
from .endpoint import Endpoint, resolve_endpoint
from .images import TAIL_LINES, ImageMethods
from .layers import LayerInfo, layer_sizes

__all__ = [
    "TAIL_LINES",
    "Bind",
    "BuildSources",
    "ContainerResult",
    "Endpoint",
    "Engine",
    "LayerInfo",
    "context_paths",
    "context_tar",
    "layer_sizes",
    "resolve_endpoint",
]


class Engine(ImageMethods, ContainerMethods):
    """A connection to the Docker engine: DOCKER_HOST, the current docker context, or the default socket."""
