"""Gather a plan's inputs, execute it on the engine, and record the result in the image map.

`prepare` reads the source tree and the registry (nothing changes); `build_images`
builds and pushes what the plan says (`execute`: dependencies first,
independent images in parallel), adds the extra tags, and merges the images
into the map under its lock, only once every image succeeded.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from . import builders, reference
from . import push as pushing
from .builders import Builder, ClassicBuilder
from .check.pip_check_cache import PipCheckCache
from .config import BASE_IMAGE_ARG, Config
from .engine import Engine
from .errors import BuildError, BuildtoolError, ConfigError, EngineError, Interrupted, RegistryError
from .inputs import context, step_imports
from .inputs import plan as planning
from .inputs.context import BuildContext
from .inputs.digest import LABEL_INPUTS
from .inputs.plan import BUILD, ImagePlan, Plan
from .interrupt import Token
from .lock import map_lock
from .lock.image_map import ImageMap, LockedImage
from .push import workdir
from .push.registry import Registry
from .util.progress import Events

log = logging.getLogger(__name__)

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


def resolve_external(registry: Registry, text: str) -> str:
    """Pin an external base reference by digest (a reference that has one is taken as is)."""
    ref = reference.parse(text)
    if ref.digest:
        return str(ref)
    try:
        found = registry.digest(ref)
    except RegistryError as exc:
        raise RegistryError(
            f"cannot resolve base image {text}: {exc}. On a machine without a public registry, "
            "push a Python base image to a registry you can reach and set base_image "
            "(or BUILDTOOL_BASE_IMAGE) to it"
        ) from None
    if not found:
        raise RegistryError(
            f"base image {text} not found in {ref.api_host}; push it there or set base_image/BUILDTOOL_BASE_IMAGE"
        )
    return str(ref.with_digest(found))


def prepare(config: Config, registry: Registry, previous: ImageMap | None) -> Prepared:
    """Scan contexts, pin external bases, look up every inputs tag in the registry, and plan."""
    contexts = {i.name: context.scan(i.context, i.dockerfile) for i in config.images}
    externals = sorted({b for b in (config.external_base(i) for i in config.images) if b})
    pins = {text: resolve_external(registry, text) for text in externals}
    digests = {text: reference.parse(pin).digest or "" for text, pin in pins.items()}
    modules = step_imports.for_config(config)
    inputs = planning.compute_inputs(config, contexts, digests, modules)
    existing = {
        name: registry.digest(reference.parse(f"{config.repository_for(config.image(name))}:{i.tag}"))
        for name, i in inputs.items()
    }
    untrusted = {
        name: why
        for name, found in existing.items()
        if found
        and (
            why := foreign_bytes(
                registry, config.repository_for(config.image(name)), found, inputs[name].digest, config.platform
            )
        )
    }
    return Prepared(planning.make_plan(config, inputs, pins, existing, previous, untrusted), contexts, modules)


def foreign_bytes(registry: Registry, repository: str, digest: str, inputs_digest: str, platform: str) -> str | None:
    """Why the manifest `digest` of `repository` is not an image of `inputs_digest`, or None if it is: its config's
    `buildtool.inputs-digest` label must say so. A tag can be moved by anyone who may push; the label travels with
    the bytes."""
    found = registry.labels(reference.parse(f"{repository}@{digest}"), platform).get(LABEL_INPUTS)
    if found == inputs_digest:
        return None
    label = f"label {LABEL_INPUTS}={found}" if found else f"no {LABEL_INPUTS} label"
    return f"the registry's tag holds {digest}, built from other inputs ({label}): rebuilt, not trusted"


def check_image(
    engine: Engine, image: ImagePlan, modules: list[str], events: Events, token: Token, pip_checks: PipCheckCache
) -> None:
    """Before anything is pushed: the step's imports load in its image (no network), and `pip check` passes.

    pip check is skipped when the image's distributions (their fingerprint) already passed it in another image.
    """
    known = pip_checks.known()
    output = engine.call(image.tagged, step_imports.probe_command(modules, known), token=token).output
    try:
        probe = step_imports.parse_probe(output, known)
    except BuildError as exc:
        raise BuildError(f"image {image.name}: {exc}") from None
    if probe.failed_imports:
        raise BuildError(
            step_imports.describe_failures(str(image.step), image.name, probe.failed_imports)
            + "; add the package to the image's requirements"
        )
    if probe.pip_check_code is None:
        pip_check = "pip check: same distributions as an image already checked"
    elif probe.pip_check_code != 0:
        found = "; ".join(line.strip() for line in probe.pip_check_output.splitlines() if line.strip())
        raise BuildError(f"image {image.name}: `pip check` found broken requirements: {found[-800:]}")
    else:
        pip_check = "pip check passed"
        if probe.fingerprint is not None:
            pip_checks.record(probe.fingerprint)
    events(image.name, f"imports of step {image.step} load ({', '.join(modules)}); {pip_check}")


def cache_source(engine: Engine, image: ImagePlan, previous: ImageMap | None, events: Events) -> list[str]:
    """On an engine that lacks the image's previous version (a fresh runner), pull it to reuse its layers.

    An engine that has it needs nothing: its own cache already holds the layers.
    """
    locked = previous.images.get(image.name) if previous is not None else None
    if locked is None:
        return []
    ref = reference.parse(locked.reference)
    by_digest = f"{ref.repository}@{ref.digest}"
    # Built here before: the engine knows it by its content tag (a push through a staging repository records
    # no digest under this repository), or, pulled before, by its digest.
    if engine.image_id(by_digest) is not None or engine.image_id(locked.reference.split("@")[0]) is not None:
        return []
    events(image.name, f"pull {by_digest} (the map's previous image) to reuse its layers")
    try:
        engine.pull(by_digest)
    except EngineError as exc:
        events(image.name, f"building without the previous image's layers: {exc}")
        return []
    return [by_digest]


def _base_size(engine: Engine, base: str) -> int:
    """Bytes of the base the image was built on: by its pinned reference, or by the local tag of a base built in
    this build (an image pushed by skopeo is known to the engine by tag only)."""
    for candidate in (base, base.split("@")[0]):
        found = engine.image_id(candidate)
        if found:
            return engine.size(found)
    return 0


def _held_by_registry(shared: _Shared, image: ImagePlan, base: str, pulled: list[str]) -> tuple[set[str], set[str]]:
    """Diff IDs of the layers the registry holds among the images this one shares layers with (its base, and the
    map's previous image of it), and those of them whose registry digests the engine keeps, so that its push
    skips them: the base's (the engine pushed or pulled it) and the previous image's when this build pulled it
    (`pulled`). The engine's RepoDigests do not tell: a pull of an image it already has records none of its
    layers. Only images in the target's registry count; an unreadable one counts as none."""
    target = reference.parse(image.tagged)
    sources = [base]
    locked = shared.previous.images.get(image.name) if shared.previous is not None else None
    if locked is not None:
        sources.append(locked.reference)
    held: set[str] = set()
    known: set[str] = set()
    for text in sources:
        ref = reference.parse(text)
        if ref.domain != target.domain or not ref.digest:
            continue
        try:
            layers = shared.registry.layers(ref, shared.config.platform)
        except RegistryError as exc:
            log.info("not counting the layers of %s: %s", text, exc)
            continue
        held |= set(layers)
        if text == base or f"{ref.repository}@{ref.digest}" in pulled:
            known |= set(layers)
    return held, known


def _count_layers(
    shared: _Shared, engine: Engine, image: ImagePlan, image_id: str, base: str, pulled: list[str]
) -> pushing.LayerCount:
    info = engine.layers(image_id)
    held, known = _held_by_registry(shared, image, base, pulled)
    return pushing.count_layers(info.diff_ids, info.sizes, info.size, _base_size(engine, base), held, known)


@dataclass(frozen=True)
class _Shared:
    """What every image of one build shares."""

    prepared: Prepared
    engine: Engine | None
    registry: Registry
    config: Config
    push: bool
    events: Events
    token: Token
    workdir: Path | None
    previous: ImageMap | None
    pip_checks: PipCheckCache
    builder: Builder | None


def _build_one(image: ImagePlan, results: Mapping[str, Result], shared: _Shared) -> Result:
    started = time.monotonic()
    events = shared.events
    if image.action != BUILD:
        events(image.name, f"reuse {image.tagged}@{image.existing_digest}")
        return Result(image.name, f"{image.tagged}@{image.existing_digest}", image.action, 0.0)
    engine = shared.engine
    assert engine is not None, "an image to build needs an engine"
    base = results[image.base_image].reference if image.base_image else str(image.external_base)
    args = {**dict(image.build_args), BASE_IMAGE_ARG: base}
    cache_from = cache_source(engine, image, shared.previous, events)
    reusing = " (layers of the previous image reusable)" if cache_from else ""
    events(image.name, f"build {image.tagged} on {base}{reusing}")
    planned = shared.prepared.contexts[image.name]
    if context.scan(planned.root, planned.dockerfile) != planned:
        # The tag names what was hashed: sources edited since then must not be pushed under it.
        raise BuildError(
            f"image {image.name}: files of {planned.root} changed since the build was planned; run it again"
        )
    shared.token.raise_if_cancelled()
    builder = shared.builder or ClassicBuilder(engine)
    image_id = builder.build(
        planned,
        image.tagged,
        args,
        platform=shared.config.platform,
        labels={LABEL_INPUTS: image.inputs.digest, LABEL_IMAGE: image.name},
        cache_from=cache_from,
        progress=lambda message: events(image.name, message),
        token=shared.token,
    )
    shared.token.raise_if_cancelled()
    modules = shared.prepared.step_modules.get(image.step, []) if image.step else None
    check_token = shared.token.child()

    def check() -> None:
        if modules is not None:
            check_image(engine, image, modules, events, check_token, shared.pip_checks)

    if not shared.push:
        check()
        events(image.name, f"built {image.tagged} in {time.monotonic() - started:.0f}s (not pushed)")
        return Result(image.name, image.tagged, image.action, time.monotonic() - started)
    assert shared.workdir is not None
    count = _count_layers(shared, engine, image, image_id, base, cache_from)
    pusher = pushing.pusher_for(shared.config, engine, count.new_bytes, count.engine_bytes)
    target = reference.parse(image.tagged)
    job = pushing.PushJob(
        image.name,
        image.tagged,
        image_id,
        target,
        pushing.staging_reference(target),
        shared.workdir,
        shared.config.compression_level,
        shared.token.child(),
        lambda message: events(image.name, message),
    )
    events(image.name, f"push via {pusher.name} ({count.describe()}) to {job.staging} while it is checked")
    digest = pushing.publish_checked(job, pusher, shared.registry, check)
    events(image.name, f"pushed {image.tagged}@{digest} in {time.monotonic() - started:.0f}s")
    return Result(image.name, f"{image.tagged}@{digest}", image.action, time.monotonic() - started)


_STOP_WAIT = 1.0  # seconds the main thread gives running images to stop and clean up after a signal


def execute(
    prepared: Prepared,
    engine: Engine | None,
    registry: Registry,
    config: Config,
    *,
    push: bool,
    jobs: int,
    events: Events,
    token: Token | None = None,
    workdir: Path | None = None,
    previous: ImageMap | None = None,
    pip_checks: PipCheckCache | None = None,
    builder: Builder | None = None,
) -> dict[str, Result]:
    """Run the plan: an image starts once its base is done; on the first failure nothing new starts.

    Images are built in daemon threads that the main thread waits for in short slices, so a signal reaches it at
    once; the token then stops what the images started (skopeo, the engine's push, check containers).
    """
    if pip_checks is None:
        pip_checks = PipCheckCache.default()
    shared = _Shared(
        prepared, engine, registry, config, push, events, token or Token(), workdir, previous, pip_checks, builder
    )
    results: dict[str, Result] = {}
    pending = list(prepared.plan.images)
    errors: list[BuildtoolError] = []
    finished: queue.Queue[tuple[ImagePlan, Result | BaseException]] = queue.Queue()
    running: dict[str, threading.Thread] = {}

    def work(image: ImagePlan, done: Mapping[str, Result]) -> None:
        try:
            outcome: Result | BaseException = _build_one(image, done, shared)
        except BaseException as exc:  # handed to the main thread
            outcome = exc
        finished.put((image, outcome))

    try:
        while (pending and not errors) or running:
            for image in [i for i in pending if not i.base_image or i.base_image in results]:
                # A free worker starts an image now; a queued one would still start after a failure.
                if errors or len(running) >= max(1, jobs):
                    break
                pending.remove(image)
                thread = threading.Thread(
                    target=work, args=(image, dict(results)), name=f"build-{image.name}", daemon=True
                )
                running[image.name] = thread
                thread.start()
            try:
                image, outcome = finished.get(timeout=0.2)
            except queue.Empty:
                continue
            running.pop(image.name).join()
            if isinstance(outcome, Result):
                results[image.name] = outcome
                continue
            events(image.name, "failed")
            if isinstance(outcome, BuildtoolError):
                errors.append(outcome)
            else:  # unanticipated: still stop starting new work, and say which image
                errors.append(BuildError(f"image {image.name}: unexpected {outcome.__class__.__name__}: {outcome}"))
    except Interrupted:
        shared.token.cancel()
        deadline = time.monotonic() + _STOP_WAIT
        for thread in running.values():  # they delete their staging images; the process exit ends the rest
            thread.join(max(0.0, deadline - time.monotonic()))
        raise
    interrupted = [e for e in errors if isinstance(e, Interrupted)]
    if interrupted:
        raise interrupted[0]
    if errors:
        for extra in errors[1:]:
            log.error("%s", extra)
        raise errors[0]
    return results


def entries(prepared: Prepared, results: Mapping[str, Result]) -> dict[str, LockedImage]:
    """The map's entries for this build's images."""
    locked = {}
    for name, result in results.items():
        planned = prepared.plan.get(name)
        locked[name] = LockedImage(
            result.reference, planned.inputs.digest, planned.base_label, dict(planned.inputs.items)
        )
    return locked


@dataclass(frozen=True)
class Outcome:
    results: Mapping[str, Result]
    sizes: Mapping[str, int]  # compressed bytes in the registry, per pushed image
    map_changed: bool | None  # None without --push


def hold(registry: Registry, pinned: reference.Reference, events: Events, name: str) -> None:
    """Keep the pinned manifest tagged by its digest tag, so that moving its content tag never leaves it to the
    registry's garbage collection (an image pushed before digest tags existed gets its tag on reuse)."""
    assert pinned.digest is not None, "a result of a push is pinned"
    tag = reference.hold_tag(pinned.digest)
    if registry.digest(reference.Reference(pinned.domain, pinned.path, tag)) != pinned.digest:
        registry.add_tag(pinned, tag)
        events(name, f"tagged {pinned.repository}:{tag[:19]}… so the pinned image outlives garbage collection")


def check_extra_tags(tags: list[str], push: bool) -> None:
    for tag in tags:
        if not push:
            raise ConfigError("--tag needs --push: extra tags are added in the registry")
        if not reference.TAG_RE.match(tag):
            raise ConfigError(
                f"--tag {tag!r}: a tag is up to 128 letters, digits, '_', '.' and '-', not starting with '.' or '-'"
            )


def build_images(
    full: Config,
    selected: Config,
    prepared: Prepared,
    registry: Registry,
    *,
    push: bool,
    jobs: int,
    extra_tags: list[str],
    events: Events,
    token: Token,
    previous: ImageMap | None,
    builder: str | None = None,
) -> Outcome:
    """Execute the plan; with `push`, add the extra tags and merge the images into the map (under its lock).

    `builder` overrides the configuration's (classic, buildkit, auto)."""
    check_extra_tags(extra_tags, push)
    # The engine is needed only when something is built: a no-op asks the registry alone.
    engine = Engine() if prepared.plan.to_build else None
    try:
        chosen = None
        if engine is not None:
            chosen, why = builders.choose(selected, engine, builder)
            events("-", why)
        with workdir.work_folder() as folder:
            results = execute(
                prepared,
                engine,
                registry,
                selected,
                push=push,
                jobs=jobs,
                events=events,
                token=token,
                workdir=folder,
                previous=previous,
                builder=chosen,
            )
    finally:
        if engine is not None:
            engine.close()
    if not push:
        return Outcome(results, {}, None)
    sizes = {}
    for name, result in sorted(results.items()):
        with token.publishing():
            hold(registry, reference.parse(result.reference), events, name)
        for tag in extra_tags:
            with token.publishing():
                registry.add_tag(reference.parse(result.reference), tag)
        sizes[name] = registry.size(reference.parse(result.reference), full.platform).total
    # Only now, with every image built, checked, pushed and tagged, does the map change.
    with token.publishing():
        changed = map_lock.update(full.image_map, entries(prepared, results), {i.name: i.step for i in full.images})
    return Outcome(results, sizes, changed)
