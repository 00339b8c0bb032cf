"""The configuration's types (`Config`, `ImageConfig`), the values its keys allow, and the image selection."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..errors import ConfigError

BASE_IMAGE_ARG = "BASE_IMAGE"
PULL_POLICIES = ("Always", "IfNotPresent", "Never")
PUSH_WAYS = ("auto", "skopeo", "engine")  # who pushes an image (see push/__init__.py, pusher_for)
BUILDERS = ("auto", "classic", "buildkit")  # what builds an image (see builders.py)
INSTALLERS = ("uv", "pip")  # what a rendered Dockerfile installs the requirements with
# How the steps get the platform credentials: pipeline parameters, or a Kubernetes Secret (a DNS-1123 name).
CREDENTIALS_PARAMETERS, CREDENTIALS_K8S_SECRET = "parameters", "k8s-secret:"


@dataclass(frozen=True)
class ImageConfig:
    """One image: where its sources are, what it builds on, which pipeline step it serves."""

    name: str
    context: Path
    dockerfile: str = "Dockerfile"
    step: str | None = None
    # Exactly one of these decides the BASE_IMAGE build argument:
    base: str | None = None  # another image of the project
    base_image: str | None = None  # an external reference (else the global one)
    build_args: tuple[tuple[str, str], ...] = ()
    # A Dockerfile rendered from images/templates/<template> (None: hand-written); see docs/images.md.
    template: str | None = None
    template_vars: Mapping[str, Any] = field(default_factory=dict, hash=False)
    requirements: str | None = None  # the hash-locked file the layer groups are cut from, relative to the context
    layers: tuple[tuple[str, ...], ...] = ()  # roots of each layer group; the rest goes in a last layer
    installer: str = "uv"


@dataclass(frozen=True)
class Config:
    path: Path
    root: Path
    registry: str
    repository: str
    base_image: str
    platform: str
    image_map: Path
    output: Path
    pipeline: str
    steps_module: str
    image_pull_policy: str
    push_with: str = "auto"
    compression_level: int = 6
    credentials: str = CREDENTIALS_PARAMETERS
    images: tuple[ImageConfig, ...] = field(default_factory=tuple)
    # Repositories (no tag or digest) of images buildtool does not build, accepted when pinned by digest.
    external_images: tuple[str, ...] = ()
    # Where `repository` came from when the file does not set it (e.g. "[project].name"); "" when it does.
    repository_from: str = ""
    builder: str = "auto"
    templates: Path | None = None  # folder of the Dockerfile templates

    def image(self, name: str) -> ImageConfig:
        for image in self.images:
            if image.name == name:
                return image
        raise KeyError(name)

    @property
    def steps(self) -> dict[str, str]:
        """Pipeline step key -> name of the image that serves it."""
        return {i.step: i.name for i in self.images if i.step}

    def repository_for(self, image: ImageConfig) -> str:
        return f"{self.registry}/{self.repository}/{image.name}"

    @property
    def repositories(self) -> dict[str, str]:
        """Image name -> the repository its references must name: <registry>/<repository>/<name>."""
        return {i.name: self.repository_for(i) for i in self.images}

    def external_base(self, image: ImageConfig) -> str | None:
        """The external base reference of `image`, or None if it builds on a project image."""
        return None if image.base else (image.base_image or self.base_image)


def select(config: Config, names: list[str]) -> Config:
    """Keep only the named images and what they build on; ConfigError for unknown names."""
    if not names:
        return config
    known = {i.name for i in config.images}
    wanted: set[str] = set()
    for name in names:
        if name not in known:
            close = difflib.get_close_matches(name, sorted(known), n=1)
            hint = f"did you mean '{close[0]}'?" if close else f"images are: {', '.join(sorted(known))}"
            raise ConfigError(f"{config.path}: no image named {name!r}; {hint}")
        while name:
            wanted.add(name)
            name = config.image(name).base or ""
    return replace(config, images=tuple(i for i in config.images if i.name in wanted))
