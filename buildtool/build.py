"""Gather a plan's inputs, execute it on the engine, and record the result in the image map.

`prepare` reads the source tree and the registry (nothing changes); `execute`
builds and pushes what the plan says, dependencies first, independent images in
parallel; `record` rewrites the map only once every image succeeded.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Callable, Mapping

from . import context, plan as planning, reference, step_imports
from .push import publish
from .config import BASE_IMAGE_ARG, Config
from .context import BuildContext
from .engine import Engine
from .errors import BuildError, BuildtoolError, ImageMapError, PushError, RegistryError
from .image_map import ImageMap, LockedImage
from .plan import BUILD, ImagePlan, Plan
from .push.registry import Registry

log = logging.getLogger(__name__)

Events = Callable[[str, str], None]  # (image name, message)
LABEL_INPUTS = "buildtool.inputs-digest"
LABEL_IMAGE = "buildtool.image"


@dataclass(frozen=True)
class Prepared:
    plan: Plan
    contexts: Mapping[str, BuildContext]
    step_modules: Mapping[str, list[str]]  # step -> modules its function imports


@dataclass(frozen=True)
class Result:
    name: str
    reference: str  # pinned after a push or a reuse; the local tag after a build without push
    action: str
    seconds: float

    @property
    def pinned(self) -> bool:
        return reference.is_pinned(self.reference)


def resolve_external(registry: Registry, text: str) -> str:
    """Pin an external base reference by digest (a reference that has one is taken as is)."""
    ref = reference.parse(text)
    if ref.digest:
        return str(ref)
    try:
        found = registry.digest(ref)
    except RegistryError as exc:
        raise RegistryError(f"cannot resolve base image {text}: {exc}. On a machine without a public registry, "
                            "run scripts/infra-up.sh and use the base it prints (BUILDTOOL_BASE_IMAGE=...)") from None
    if not found:
        raise RegistryError(f"base image {text} not found in {ref.api_host}; push it there or set base_image/BUILDTOOL_BASE_IMAGE")
    return str(ref.with_digest(found))


def prepare(config: Config, registry: Registry, previous: ImageMap | None) -> Prepared:
    """Scan contexts, pin external bases, look up every inputs tag in the registry, and plan."""
    contexts = {i.name: context.scan(i.context, i.dockerfile) for i in config.images}
    externals = sorted({b for b in (config.external_base(i) for i in config.images) if b})
    pins = {text: resolve_external(registry, text) for text in externals}
    digests = {text: reference.parse(pin).digest or "" for text, pin in pins.items()}
    modules = step_imports.for_config(config)
    inputs = planning.compute_inputs(config, contexts, digests, modules)
    existing = {name: registry.digest(reference.parse(f"{config.repository_for(config.image(name))}:{i.tag}"))
                for name, i in inputs.items()}
    return Prepared(planning.make_plan(config, inputs, pins, existing, previous), contexts, modules)


def check_image(engine: Engine, image: ImagePlan, modules: list[str], events: Events) -> None:
    """Before anything is pushed: the step's imports load in its image (no network), and `pip check` passes."""
    probe = step_imports.parse_probe(engine.run(image.tagged, step_imports.probe_command(modules)).output)
    if probe.failed_imports:
        raise BuildError(step_imports.describe_failures(str(image.step), image.name, probe.failed_imports)
                         + "; add the package to the image's requirements")
    if probe.pip_check_code != 0:
        raise BuildError(f"image {image.name}: `pip check` found broken requirements: "
                         f"{probe.pip_check_output.strip()[-800:]}")
    events(image.name, f"imports of step {image.step} load ({', '.join(modules)}); pip check passed")


def _run_one(image: ImagePlan, prepared: Prepared, results: Mapping[str, Result], engine: Engine | None, registry: Registry,
             config: Config, push: bool, events: Events) -> Result:
    started = time.monotonic()
    if image.action != BUILD:
        events(image.name, f"reuse {image.tagged}@{image.existing_digest}")
        return Result(image.name, f"{image.tagged}@{image.existing_digest}", image.action, 0.0)
    assert engine is not None, "an image to build needs an engine"
    base = results[image.base_image].reference if image.base_image else str(image.external_base)
    args = {**dict(image.build_args), BASE_IMAGE_ARG: base}
    events(image.name, f"build {image.tagged} on {base}")
    planned = prepared.contexts[image.name]
    if context.scan(planned.root, planned.dockerfile) != planned:
        # The tag names what was hashed: sources edited since then must not be pushed under it.
        raise BuildError(f"image {image.name}: files of {planned.root} changed since the build was planned; run it again")
    image_id = engine.build(planned, image.tagged, args, platform=config.platform,
                            labels={LABEL_INPUTS: image.inputs.digest, LABEL_IMAGE: image.name},
                            progress=lambda message: events(image.name, message))
    modules = prepared.step_modules.get(image.step, []) if image.step else None

    def check() -> None:
        if modules is not None:
            check_image(engine, image, modules, events)

    if not push:
        check()
        events(image.name, f"built {image.tagged} in {time.monotonic() - started:.0f}s (not pushed)")
        return Result(image.name, image.tagged, image.action, time.monotonic() - started)
    if config.push_with == "engine" or engine.stores_images_in_containerd():
        # Asked for, or an engine keeping compressed layers (containerd image store): it pushes them itself.
        check()
        digest = engine.push(image.repository, image.tag, progress=lambda message: events(image.name, message))
    else:
        digest = _push_checked(image, image_id, base, engine, registry, config, check, events)
    served = registry.digest(reference.parse(image.tagged))
    if served != digest:
        raise PushError(f"push of {image.tagged} reported {digest} but the registry serves {served}")
    events(image.name, f"pushed {image.tagged}@{digest} in {time.monotonic() - started:.0f}s")
    return Result(image.name, f"{image.tagged}@{digest}", image.action, time.monotonic() - started)


def _push_checked(image: ImagePlan, image_id: str, base: str, engine: Engine, registry: Registry, config: Config,
                  check: Callable[[], None], events: Events) -> str:
    """Upload the image's blobs while it is checked; its manifest (the image itself) goes up only if the check passed."""
    progress: Callable[[str], None] = lambda message: events(image.name, message)
    base_ref = reference.parse(base) if reference.is_pinned(base) else None
    # Even with every layer in the registry (download and upload add none to the base) the export is needed,
    # for the config: the engine's push would compress the base's layers again, as blobs of its own.
    layers = publish.plan_layers(engine, registry, image_id, reference.parse(image.tagged), base_ref,
                                 platform=config.platform)
    cancel = threading.Event()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"stage-{image.name}") as side:
        staging = side.submit(publish.stage, engine, registry, layers, level=config.compression_level,
                              cancel=cancel, progress=progress)
        try:
            check()
        except BaseException:
            cancel.set()  # the blobs uploaded so far stay unreferenced; the registry's garbage collection takes them
            raise
        staged = staging.result()
    return publish.publish(registry, staged)


def execute(prepared: Prepared, engine: Engine | None, registry: Registry, config: Config, *, push: bool, jobs: int,
            events: Events) -> dict[str, Result]:
    """Run the plan: an image starts once its base is done; on the first failure nothing new starts."""
    results: dict[str, Result] = {}
    pending = list(prepared.plan.images)
    errors: list[BuildtoolError] = []
    with ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="build") as pool:
        running: dict[Future[Result], ImagePlan] = {}
        while (pending and not errors) or running:
            for image in [i for i in pending if not i.base_image or i.base_image in results]:
                # Hand the pool only what a free worker starts now: a queued image would start after a failure.
                if errors or len(running) >= max(1, jobs):
                    break
                pending.remove(image)
                running[pool.submit(_run_one, image, prepared, dict(results), engine, registry, config, push,
                                    events)] = image
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                image = running.pop(future)
                try:
                    results[image.name] = future.result()
                except BuildtoolError as exc:
                    errors.append(exc)
                    events(image.name, "failed")
                except Exception as exc:  # unanticipated: still stop starting new work, and say which image
                    errors.append(BuildError(f"image {image.name}: unexpected {exc.__class__.__name__}: {exc}"))
                    events(image.name, "failed")
    if errors:
        for extra in errors[1:]:
            log.error("%s", extra)
        raise errors[0]
    return results


def record(full_config: Config, prepared: Prepared, results: Mapping[str, Result],
           previous: ImageMap | None) -> ImageMap:
    """The new map: this run's images, and the previous map's entries for images not selected this time."""
    steps: dict[str, str] = {}
    locked: dict[str, LockedImage] = {}
    for image in full_config.images:
        result = results.get(image.name)
        if result is not None:
            planned = prepared.plan.get(image.name)
            locked[image.name] = LockedImage(result.reference, planned.inputs.digest, planned.base_label,
                                             dict(planned.inputs.items))
        elif previous is not None and image.name in previous.images:
            locked[image.name] = previous.images[image.name]
        else:
            raise ImageMapError(f"{full_config.image_map}: no earlier entry for image {image.name!r}; "
                                "build it too (run `buildtool build --push` without naming images)")
        if image.step:
            steps[image.step] = locked[image.name].reference
    return ImageMap(steps=steps, images=locked)
