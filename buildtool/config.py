"""`[tool.buildtool]` in pyproject.toml, loaded into frozen dataclasses.

Every problem is a ConfigError with one line naming the file, the key and the fix.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from . import reference
from .errors import ConfigError
from .gate.kfp_names import component_name

BASE_IMAGE_ARG = "BASE_IMAGE"
PULL_POLICIES = ("Always", "IfNotPresent", "Never")
PUSH_WAYS = ("auto", "skopeo", "engine")  # who pushes an image (see push/__init__.py, pusher_for)
BUILDERS = ("auto", "classic", "buildkit")  # what builds an image (see builders.py)
INSTALLERS = ("uv", "pip")  # what a rendered Dockerfile installs the requirements with
_TEMPLATE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
# How the steps get the platform credentials: pipeline parameters, or a Kubernetes Secret (a DNS-1123 name).
CREDENTIALS_PARAMETERS, CREDENTIALS_K8S_SECRET = "parameters", "k8s-secret:"
_K8S_SECRET_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
# Build args are recorded in the image's history: refuse names that look like secrets,
# and values that carry a URL credential (https://user:password@host/...).
_SECRET_NAME = re.compile(
    r"PASSWORD|PASSWD|PASSPHRASE|SECRET|TOKEN|CREDENTIAL|PRIVATE|AUTH(?!OR)|COOKIE|NETRC|API_?KEY|ACCESS_?KEY"
    r"|(?:^|_)(?:KEY|PAT|PASS|PWD)(?:_|$)",
    re.I,
)
_URL_CREDENTIAL = re.compile(r"://[^/?#@\s:]*:[^/?#\s]*@")
_IMAGE_NAME = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*$")
_PLATFORM = re.compile(r"^[a-z0-9]+/[a-z0-9_]+(?:/[a-z0-9]+)?$")


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


_TOP_KEYS = {
    "registry": str,
    "repository": str,
    "base_image": str,
    "platform": str,
    "image_map": str,
    "output": str,
    "pipeline": str,
    "steps_module": str,
    "image_pull_policy": str,
    "push_with": str,
    "compression_level": int,
    "credentials": str,
    "images": dict,
    "external_images": list,
    "builder": str,
    "templates": str,
}
_IMAGE_KEYS = {
    "context": str,
    "dockerfile": str,
    "step": str,
    "base": str,
    "base_image": str,
    "build_args": dict,
    "template": str,
    "template_vars": dict,
    "requirements": str,
    "layers": list,
    "installer": str,
}
_KIND = {str: "a string", int: "an integer", dict: "a table", list: "a list"}
_DEFAULTS = {
    "registry": "127.0.0.1:5000",
    "base_image": "python:3.11-slim",
    "platform": "linux/amd64",
    "image_map": "image_map.yaml",
    "output": "pipeline.yaml",
    "pipeline": "pipeline.training_pipeline:make_pipeline",
    "steps_module": "pipeline.steps",
    "image_pull_policy": "IfNotPresent",
    "push_with": "auto",
    "compression_level": 6,
    "credentials": CREDENTIALS_PARAMETERS,
    "builder": "auto",
    "templates": "images/templates",
}


def _fail(path: Path, key: str, problem: str) -> ConfigError:
    return ConfigError(f"{path}: [tool.buildtool] {key}: {problem}")


def _check_keys(path: Path, prefix: str, table: Mapping[str, Any], schema: Mapping[str, type]) -> None:
    for key, value in table.items():
        if key not in schema:
            close = difflib.get_close_matches(key, list(schema), n=1)
            hint = f"did you mean '{close[0]}'?" if close else f"known keys: {', '.join(sorted(schema))}"
            raise _fail(path, f"{prefix}{key}", f"unknown key; {hint}")
        if not isinstance(value, schema[key]):
            raise _fail(path, f"{prefix}{key}", f"expected {_KIND[schema[key]]}, got {type(value).__name__} {value!r}")


def _image(path: Path, root: Path, name: str, table: Mapping[str, Any]) -> ImageConfig:
    prefix = f"images.{name}."
    if not isinstance(table, dict):
        raise _fail(path, f"images.{name}", "expected a table ([tool.buildtool.images.NAME])")
    if not _IMAGE_NAME.match(name):
        raise _fail(
            path, f"images.{name}", "image names are lowercase letters, digits and . _ - (they become repository names)"
        )
    _check_keys(path, prefix, table, _IMAGE_KEYS)
    if "context" not in table:
        raise _fail(path, f"{prefix}context", 'missing; set the build context folder, e.g. context = "images/{name}"')
    context = _resolve(path, f"{prefix}context", root / table["context"])
    if not context.is_relative_to(root):
        raise _fail(
            path,
            f"{prefix}context",
            f"folder {context} lies outside the repository {root}; "
            "keep build contexts inside it, where review sees what they send",
        )
    if not context.is_dir():
        raise _fail(path, f"{prefix}context", f"folder {context} does not exist")
    if not (context / ".dockerignore").is_file():
        raise _fail(
            path,
            f"{prefix}context",
            f"no .dockerignore in {context}; add one that lets through only what "
            "the Dockerfile copies (e.g. '*' then '!Dockerfile')",
        )
    dockerfile = table.get("dockerfile", "Dockerfile")
    if not (context / dockerfile).resolve().is_relative_to(context):
        raise _fail(path, f"{prefix}dockerfile", f"{dockerfile!r} is outside the context {context}; keep it inside")
    rendered = _rendering(path, prefix, context, table)
    # A rendered Dockerfile may be missing: `buildtool render` writes it, `check` and `build` say so.
    if "template" not in table and not (context / dockerfile).is_file():
        raise _fail(
            path,
            f"{prefix}dockerfile",
            f'no Dockerfile at {context / dockerfile}; create it or set dockerfile = "..." relative to the context',
        )
    if "base" in table and "base_image" in table:
        raise _fail(
            path, prefix + "base", "set either base (a project image) or base_image (an external reference), not both"
        )
    if "base_image" in table:
        _check_reference(path, prefix + "base_image", table["base_image"])
    args = table.get("build_args", {})
    for arg, value in args.items():
        if not isinstance(value, str):
            raise _fail(path, f"{prefix}build_args.{arg}", f"expected a string, got {type(value).__name__} {value!r}")
        if arg == BASE_IMAGE_ARG:
            raise _fail(
                path,
                f"{prefix}build_args.{arg}",
                "BASE_IMAGE is set by buildtool from base/base_image; set those instead",
            )
        if _SECRET_NAME.search(arg):
            raise _fail(
                path,
                f"{prefix}build_args.{arg}",
                "looks like a secret; build args are recorded in the image history, pass secrets at run time instead",
            )
        if _URL_CREDENTIAL.search(value):  # the value itself is never shown
            raise _fail(
                path,
                f"{prefix}build_args.{arg}",
                "the value carries a user:password@ credential; build "
                "args are recorded in the image history, pass secrets at "
                "run time instead",
            )
    return ImageConfig(
        name=name,
        context=context,
        dockerfile=dockerfile,
        step=table.get("step"),
        base=table.get("base"),
        base_image=table.get("base_image"),
        build_args=tuple(sorted(args.items())),
        **rendered,
    )


def _rendering(path: Path, prefix: str, context: Path, table: Mapping[str, Any]) -> dict[str, Any]:
    """The template keys of one image: checked here, so rendering gets names it can trust."""
    keys = ("template_vars", "requirements", "layers", "installer")
    if "template" not in table:
        for key in keys:
            if key in table:
                raise _fail(
                    path,
                    prefix + key,
                    'only an image with a template uses it; set template = "..." '
                    "(a file of the templates folder) or remove the key",
                )
        return {}
    template = table["template"]
    if not _TEMPLATE_NAME.match(template):
        raise _fail(
            path,
            prefix + "template",
            f"{template!r} is not a file name of the templates folder (letters, digits, '.', '_' and '-'; no folders)",
        )
    requirements = table.get("requirements")
    if requirements is not None:
        target = (context / requirements).resolve()
        if not target.is_relative_to(context) or not target.is_file():
            raise _fail(
                path,
                prefix + "requirements",
                f"no file {requirements!r} in the context {context}; name the hash-locked requirements file inside it",
            )
    layers = table.get("layers", [])
    if layers and requirements is None:
        raise _fail(path, prefix + "layers", 'layer groups are cut from a lock: set requirements = "..." too')
    groups = []
    for index, group in enumerate(layers):
        if not isinstance(group, list) or not group or not all(isinstance(root, str) and root for root in group):
            raise _fail(
                path,
                f"{prefix}layers[{index}]",
                f'expected a non-empty array of package names, got {group!r}, e.g. layers = [["tensorflow-cpu"]]',
            )
        groups.append(tuple(group))
    for key, value in _flat(table.get("template_vars", {})):
        # Rendered into a committed Dockerfile, and from there into the image's history: never a secret.
        if _SECRET_NAME.search(key.rsplit(".", 1)[-1]):
            raise _fail(
                path,
                f"{prefix}template_vars.{key}",
                "looks like a secret; rendered Dockerfiles are "
                "committed and recorded in the image history, pass "
                "secrets at run time instead",
            )
        if isinstance(value, str) and _URL_CREDENTIAL.search(value):  # the value itself is never shown
            raise _fail(
                path,
                f"{prefix}template_vars.{key}",
                "the value carries a user:password@ credential; "
                "rendered Dockerfiles are committed, pass secrets at "
                "run time instead",
            )
    installer = table.get("installer", "uv")
    if installer not in INSTALLERS:
        raise _fail(path, prefix + "installer", f"{installer!r} is not one of {', '.join(INSTALLERS)}")
    return {
        "template": template,
        "template_vars": dict(table.get("template_vars", {})),
        "requirements": requirements,
        "layers": tuple(groups),
        "installer": installer,
    }


def _flat(value: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """(dotted key, leaf value) of every value in nested tables and arrays (arrays by index)."""
    if isinstance(value, dict):
        return [pair for k, v in value.items() for pair in _flat(v, f"{prefix}{k}.")]
    if isinstance(value, list):
        return [pair for n, v in enumerate(value) for pair in _flat(v, f"{prefix}{n}.")]
    return [(prefix.rstrip("."), value)]


def _check_reference(path: Path, key: str, value: str) -> None:
    try:
        reference.parse(value)
    except ValueError:
        raise _fail(path, key, f"{value!r} is not a valid image reference (e.g. python:3.11-slim)") from None


def _check_credentials(path: Path, value: str) -> None:
    if value == CREDENTIALS_PARAMETERS:
        return
    name = value.removeprefix(CREDENTIALS_K8S_SECRET)
    if name == value or len(name) > 253 or not _K8S_SECRET_NAME.fullmatch(name):
        raise _fail(
            path,
            "credentials",
            f'{value!r} is neither "{CREDENTIALS_PARAMETERS}" nor '
            f'"{CREDENTIALS_K8S_SECRET}NAME" with NAME a Kubernetes Secret name (lowercase letters, '
            "digits, '-' and '.'), e.g. \"k8s-secret:platform-credentials\"",
        )


def _resolve(path: Path, key: str, target: Path) -> Path:
    """`target` with links followed; a link loop is a ConfigError, not a crash."""
    try:
        return target.resolve()
    except (OSError, RuntimeError) as exc:
        raise _fail(path, key, f"{target} cannot be resolved ({exc.__class__.__name__}); fix the link") from None


def _check_registry(path: Path, registry: str, overridden: bool) -> None:
    """A first label without a dot, a port or `localhost` is a Docker Hub namespace, not a registry."""
    host = registry.split("/", 1)[0]
    if reference.looks_like_domain(host):
        return
    source = " (from --registry or BUILDTOOL_REGISTRY)" if overridden else ""
    raise _fail(
        path,
        "registry",
        f"{registry!r}{source} has no dot, port or 'localhost', so images would go to "
        f"docker.io/{registry}/...; give the registry host (e.g. {host}.example.com or "
        f'{host}:5000), or registry = "docker.io" and repository = "{host}/..." '
        "for Docker Hub",
    )


def _generated(path: Path, root: Path, key: str, value: str) -> Path:
    """A file buildtool writes (image_map, output): inside the repository, and not a folder or the configuration."""
    target = _resolve(path, key, root / value)
    if not target.is_relative_to(root):
        raise _fail(
            path, key, f"{value!r} lies outside the repository {root}; keep it inside (compile --output takes any path)"
        )
    if target == path:
        raise _fail(path, key, f"{value!r} is the configuration file itself; name a YAML file, e.g. {_DEFAULTS[key]}")
    if target.is_dir():
        raise _fail(path, key, f"{value!r} is a folder; name a file, e.g. {_DEFAULTS[key]}")
    return target


def _check_graph(path: Path, images: tuple[ImageConfig, ...]) -> None:
    names = {i.name for i in images}
    steps: dict[str, str] = {}
    for image in images:
        if image.base and image.base not in names:
            close = difflib.get_close_matches(image.base, sorted(names), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else f"; images are: {', '.join(sorted(names))}"
            raise _fail(path, f"images.{image.name}.base", f"no image named {image.base!r}{hint}")
        if image.step:
            if image.step in steps:
                raise _fail(
                    path,
                    f"images.{image.name}.step",
                    f"step {image.step!r} is already served by image {steps[image.step]!r}",
                )
            steps[image.step] = image.name
    components: dict[str, str] = {}
    for step, name in sorted(steps.items()):
        component = component_name(step)
        if component in components:
            raise _fail(
                path,
                f"images.{name}.step",
                f"steps {components[component]!r} and {step!r} get the same kfp "
                f"component name {component!r}, so their templates cannot be "
                "told apart; rename one function",
            )
        components[component] = step
    bases = {i.name: i.base for i in images}
    for start in bases:
        seen, current = [start], bases[start]
        while current:
            if current in seen:
                raise _fail(
                    path,
                    f"images.{start}.base",
                    f"images build on each other in a cycle: {' -> '.join(seen + [current])}",
                )
            seen.append(current)
            current = bases[current]


def _derived_repository(path: Path, data: Mapping[str, Any]) -> str:
    """`[project].name` as a repository path component, when the file does not set `repository`."""
    project = data.get("project")
    name = project.get("name") if isinstance(project, dict) else None
    derived = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") if isinstance(name, str) else ""
    if not derived:
        raise _fail(
            path,
            "repository",
            "missing, and no [project].name to derive it from; set it, e.g. "
            'repository = "myteam/myproject" '
            "(images are <registry>/<repository>/<image>)",
        )
    return derived


def _external_images(path: Path, values: Any, own: str) -> tuple[str, ...]:
    """`external_images`: repository names (no tag, no digest), none of them under buildtool's own prefix."""
    found = []
    for index, value in enumerate(values):
        key = f"external_images[{index}]"
        if not isinstance(value, str):
            raise _fail(path, key, f"expected a string, got {type(value).__name__} {value!r}")
        try:
            parsed = reference.parse(value)
        except ValueError:
            raise _fail(path, key, f"{value!r} is not an image repository (e.g. gcr.io/team/component)") from None
        if parsed.tag or parsed.digest:
            raise _fail(
                path,
                key,
                f"{value!r} names a tag or digest; list the repository only "
                f"({parsed.repository}): the pipeline must pin its images by digest",
            )
        if (parsed.repository + "/").startswith(own + "/"):
            raise _fail(
                path,
                key,
                f"{value!r} is under {own}, where buildtool pushes its own images; "
                "those are checked against the image map, not listed here",
            )
        found.append(parsed.repository)
    return tuple(sorted(set(found)))


def load(
    path: Path, *, registry: str | None = None, repository: str | None = None, base_image: str | None = None
) -> Config:
    """Load `[tool.buildtool]` from `path`; `registry`, `repository` and `base_image` override the file's values."""
    path = path.resolve()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: not found; run buildtool from the project folder or pass --config PATH") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    table = data.get("tool", {}).get("buildtool")
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: no [tool.buildtool] table; `buildtool init STEPS_MODULE` writes one")
    _check_keys(path, "", table, _TOP_KEYS)
    values = {**_DEFAULTS, **{k: v for k, v in table.items() if k != "images"}}
    repository_from = ""
    if "repository" not in table and not repository:
        values["repository"], repository_from = _derived_repository(path, data), "[project].name"
    if registry:
        values["registry"] = registry
    if repository:
        values["repository"] = repository
    if base_image:
        values["base_image"] = base_image
    _check_reference(path, "base_image", values["base_image"])
    try:
        reference.parse(f"{values['registry']}/{values['repository']}/x")
    except ValueError:
        prefix = f"{values['registry']}/{values['repository']}"
        raise _fail(path, "registry", f"{prefix!r} is not a valid registry host[:port]/repository prefix") from None
    _check_registry(path, values["registry"], bool(registry))
    if not _PLATFORM.match(values["platform"]):
        raise _fail(path, "platform", f"{values['platform']!r} is not os/arch[/variant], e.g. linux/amd64")
    if values["image_pull_policy"] not in PULL_POLICIES:
        raise _fail(
            path, "image_pull_policy", f"{values['image_pull_policy']!r} is not one of {', '.join(PULL_POLICIES)}"
        )
    if values["builder"] not in BUILDERS:
        raise _fail(path, "builder", f"{values['builder']!r} is not one of {', '.join(BUILDERS)}")
    if values["push_with"] not in PUSH_WAYS:
        raise _fail(path, "push_with", f"{values['push_with']!r} is not one of {', '.join(PUSH_WAYS)}")
    level = values["compression_level"]
    if isinstance(level, bool) or not 1 <= level <= 9:
        raise _fail(path, "compression_level", f"{level!r} is not a gzip level from 1 (fastest) to 9 (smallest)")
    _check_credentials(path, values["credentials"])
    if ":" not in values["pipeline"]:
        raise _fail(path, "pipeline", f"{values['pipeline']!r} is not 'module:function'")
    root = path.parent
    if _generated(path, root, "output", values["output"]) == _generated(path, root, "image_map", values["image_map"]):
        raise _fail(
            path,
            "output",
            f"{values['output']!r} is also the image_map; the workflow would overwrite the "
            "lock: give them different files (default pipeline.yaml and image_map.yaml)",
        )
    images_table = table.get("images", {})
    if not images_table:
        raise _fail(path, "images", "no images configured; add [tool.buildtool.images.NAME] tables")
    images = tuple(_image(path, root, name, sub) for name, sub in sorted(images_table.items()))
    _check_graph(path, images)
    return Config(
        path=path,
        root=root,
        registry=values["registry"],
        repository=values["repository"],
        base_image=values["base_image"],
        platform=values["platform"],
        image_map=root / values["image_map"],
        output=root / values["output"],
        pipeline=values["pipeline"],
        steps_module=values["steps_module"],
        image_pull_policy=values["image_pull_policy"],
        push_with=values["push_with"],
        compression_level=level,
        credentials=values["credentials"],
        images=images,
        external_images=_external_images(
            path, values.get("external_images", []), f"{values['registry']}/{values['repository']}"
        ),
        repository_from=repository_from,
        builder=values["builder"],
        templates=_resolve(path, "templates", root / values["templates"]),
    )


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
