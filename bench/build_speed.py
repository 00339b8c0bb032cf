#!/usr/bin/env python3
"""Time the plain `docker build` + `docker push` script against `buildtool build --push`.

Both sides run in this one process against the same Docker engine, the same
registry, the same Dockerfiles (one copy of the working tree) and the same
external base image, each under a repository prefix of its own so that neither
side ever finds the other's tags. Cases:

  1  warm no-op        everything built and pushed, engine cache warm
  2  empty-cache no-op everything in the registry, engine cache empty (a fresh CI runner)
  3  one-file change   images/download/Dockerfile gains a line (buildtool's import check included)
  4  cold              engine cache empty and nothing in the registry (fresh prefixes)
  5  fresh runner      engine cache empty, images in the registry, images/training/Dockerfile gains a
                       last line; compared with plain and with case 4's buildtool (cold) time
  6  one package added engine cache warm: a small pure-Python package, hash-locked, is added to
                       images/training/requirements.txt; both sides build and push (buildtool's build renders
                       the stale files itself); the bytes each side pushed are read back from the registry

The plain side builds the hand-written Dockerfiles frozen in bench/plain/ (copied into the tree copy,
where cases 3 and 5 add their line); buildtool builds the ones it renders from images/templates/, and
cases 3 and 5 add their line through the image's template variables (`extra`); `buildtool build` renders
the stale Dockerfile itself, as a user's build would (no `buildtool render` first).

The plain side of the empty-engine cases (2, 5) pulls the images its last run
pushed and builds with --cache-from them, as a competent CI script would.
Every ratio is paired: buildtool / plain of the same run (sides alternate which
goes first); a case reports the median of its runs' ratios.

Cases 2, 4 and 5 empty the engine's cache (every image not held by a container,
and the builder cache); they run only with --empty-engine, because that also
removes images other work on the engine may be using.

Run from the repository root:  .venv/bin/python bench/build_speed.py [--results bench/results]
The repository is never modified: everything runs on a copy in a temporary
folder. Images the bench tagged are removed from the engine at the end; its
repositories in the registry (under bench/<run id>/) are left there. With
--results, the raw figures go to RESULTS/<run id>.json and the commands' logs to
RESULTS/<run id>/; bench/render_results.py makes the README table from them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from buildtool import reference  # noqa: E402
from buildtool.lock import image_map  # noqa: E402
from buildtool.push.registry import Registry  # noqa: E402

IMAGES = ("base", "download", "training", "upload")
STEP_IMAGES = IMAGES[1:]
PLAIN_TAG = "bench"
PLAIN_COPY = "bench-plain"  # where the tree copy holds bench/plain/
CHANGED_FILE = "images/download/Dockerfile"
FRESH_FILE = "images/training/Dockerfile"
PYPROJECT = "pyproject.toml"
CASE_TITLES = {
    1: "1 warm no-op",
    2: "2 no-op, empty engine cache",
    3: "3 one file of download changed",
    4: "4 cold (empty cache, empty registry)",
    5: "5 fresh runner, one training line changed",
    6: "6 one small package added to training",
}
# Targets on the median of the paired ratios (buildtool seconds / plain seconds of the same run); case 5's is
# buildtool's fresh-runner time over its cold time (case 4's median), and case 3 must also rebuild download alone.
RATIO_TARGETS = {1: 1.0, 2: 0.02, 3: 1.5, 4: 0.70, 6: 0.10}
FRESH_TO_COLD_TARGET = 0.20
LOCK = "images/training/requirements.txt"
# Small pure-Python packages the training lock lacks, hash-locked (wheel and sdist): one per run of case 6.
# --added-from N starts further down the list, so that a later bench run adds packages no builder cache has seen.
ADDED_PACKAGES = (
    (
        "toolz==1.2.0",
        (
            "890f820b1cb8152785aaf9386d8707770110809035800985ca65cb24ce1120ef",
            "9667a038e9d6ecba37995e26cb2f59ec6420b6ad8dd9677de59db9b956b08490",
        ),
    ),
    (
        "appdirs==1.4.4",
        (
            "a841dacd6b99318a741b166adb07e19ee71a274450e68237b4650ca1055ab128",
            "7d5d0167b2b1ba821647616af46a749d1c653740dd0d2415100fe26e27afdf41",
        ),
    ),
    (
        "colorama==0.4.6",
        (
            "4f1d9991f5acc0ca119f9d443620b77f9d6b33703e51011c16baf57afb285fc6",
            "08695f5cb7ed6e0531a20572697297273c47b8cae5a63ffc6d6ed5c201be6e44",
        ),
    ),
    (
        "tabulate==0.10.0",
        (
            "f0b0622e567335c8fabaaa659f1b33bcb6ddfe2e496071b743aa113f8774f2d3",
            "e2cfde8f79420f6deeffdeda9aaec3b6bc5abce947655d17ac662b126e48a60d",
        ),
    ),
)
EMPTY_ENGINE_CASES = (2, 4, 5)
SIZE_TARGETS_MB = {"download": 70.0, "upload": 70.0}


def _timed_environment(extra: Mapping[str, str] | None) -> dict[str, str]:
    """The environment of a timed command: this one's, without PYTHONDONTWRITEBYTECODE. A user's installed
    buildtool runs from compiled bytecode; with the variable set, every run compiles its modules again."""
    environ = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    return {**environ, **(extra or {})}


class BenchError(Exception):
    pass


def say(message: str) -> None:
    print(message, flush=True)


class LineAdded:
    """One RUN line added to an image on both sides: to the plain side's frozen Dockerfile (at its end), and to
    buildtool's through the image's `extra` template variable (the build renders it). Undone on exit, the image
    map with it, as a checkout of these files would, so that the next build finds the rendered Dockerfile as
    the map recorded it (merely stale, not edited by hand)."""

    def __init__(self, tree: Path, image: str, line: str) -> None:
        # The rendered Dockerfile is restored too: a later case must find it as the template renders it.
        self.files = {
            tree / PLAIN_COPY / image / "Dockerfile": None,
            tree / PYPROJECT: None,
            tree / "images" / image / "Dockerfile": None,
            tree / "image_map.yaml": None,
        }
        self.image, self.line = image, line

    def __enter__(self) -> LineAdded:
        for path in self.files:
            self.files[path] = path.read_text()
        plain, config, _, _ = self.files
        plain.write_text(str(self.files[plain]) + self.line + "\n")
        text = str(self.files[config])
        start = text.index(f"[tool.buildtool.images.{self.image}")
        at = text.index("extra = []", start)
        config.write_text(text[:at] + f"extra = [{json.dumps(self.line)}]" + text[at + len("extra = []") :])
        return self

    def __exit__(self, *_: object) -> None:
        for path, text in self.files.items():
            if text is not None:
                path.write_text(text)


# --------------------------------------------------------------------------- commands


@dataclass(frozen=True)
class Line:
    at: float  # seconds since the command started
    text: str


@dataclass(frozen=True)
class Run:
    label: str
    seconds: float
    lines: tuple[Line, ...]
    log: Path

    def text(self) -> list[str]:
        return [line.text for line in self.lines]


class Commands:
    """Runs every command of the bench; each command's merged output goes to its own log file, time-stamped."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self._count = 0

    def run(
        self, label: str, argv: Sequence[str], *, env: Mapping[str, str] | None = None, cwd: Path | None = None
    ) -> Run:
        self._count += 1
        log = self.log_dir / f"{self._count:02d}-{re.sub(r'[^a-z0-9]+', '-', label.lower()).strip('-')}.log"
        lines: list[Line] = []
        started = time.monotonic()
        with open(log, "w") as handle:
            handle.write(f"$ {' '.join(argv)}\n")
            process = subprocess.Popen(
                list(argv),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                errors="replace",
                env=_timed_environment(env),
                cwd=cwd,
            )
            assert process.stdout is not None
            for raw in process.stdout:
                at = time.monotonic() - started
                text = raw.rstrip("\n")
                lines.append(Line(at, text))
                handle.write(f"[{at:7.2f}] {text}\n")
            code = process.wait()
            seconds = time.monotonic() - started
            handle.write(f"exit {code} after {seconds:.2f}s\n")
        if code != 0:
            tail = "\n".join(f"  {line.text}" for line in lines[-25:])
            raise BenchError(f"{label}: exit {code} (log: {log})\n{tail}")
        return Run(label, seconds, tuple(lines), log)

    def output(self, argv: Sequence[str]) -> str:
        """Output of a short query command (docker image ls and the like); not logged."""
        done = subprocess.run(list(argv), capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise BenchError(f"{' '.join(argv)}: exit {done.returncode}: {done.stderr.strip()[-500:]}")
        return done.stdout


# --------------------------------------------------------------------------- the two sides


@dataclass(frozen=True)
class Side:
    """One way of building: `plain` or `buildtool`, under a repository prefix of its own."""

    kind: str
    prefix: str  # e.g. bench/r20250101-120000/plain


class Bench:
    def __init__(self, args: argparse.Namespace, run_id: str, tree: Path, commands: Commands) -> None:
        self.args = args
        self.run_id = run_id
        self.tree = tree
        self.commands = commands
        self.registry = Registry()
        self.emptied = False

    # -- naming

    @property
    def namespace(self) -> str:
        return f"bench/{self.run_id}"

    def side(self, kind: str, variant: str = "") -> Side:
        return Side(kind, f"{self.namespace}/{variant}{kind}")

    def repository(self, side: Side, image: str) -> str:
        return f"{self.args.registry}/{side.prefix}/{image}"

    def registry_refs(self, side: Side) -> dict[str, str]:
        """Where each image of `side` is in the registry now (plain: its fixed tag; buildtool: its image map)."""
        if side.kind == "plain":
            return {name: f"{self.repository(side, name)}:{PLAIN_TAG}" for name in IMAGES}
        loaded = image_map.load(self.tree / "image_map.yaml")
        refs = {name: entry.reference for name, entry in loaded.images.items()}
        for name, ref in refs.items():
            if not ref.startswith(self.repository(side, name) + ":"):
                raise BenchError(f"image map holds {ref} for {name}, not an image of {side.prefix}")
        return refs

    def digests(self, side: Side) -> dict[str, str | None]:
        return {
            name: self.registry.digest(reference.parse(ref.split("@")[0]))
            for name, ref in self.registry_refs(side).items()
        }

    # -- running a side

    def build(self, side: Side, label: str, *, pull_cache: bool = False) -> Run:
        """One side's build and push (buildtool's build renders the Dockerfiles a template variable or a
        requirements lock made stale, in the same timed run)."""
        if side.kind == "plain":
            env = {
                "REGISTRY": self.args.registry,
                "PREFIX": side.prefix,
                "TAG": PLAIN_TAG,
                "BASE_IMAGE": self.args.base_image,
                "PULL_CACHE": "1" if pull_cache else "0",
                "PLAIN_DOCKERFILES": str(self.tree / PLAIN_COPY),
            }
            argv = ["bash", str(REPO / "bench" / "plain_build.sh"), str(self.tree)]
        else:
            env = {
                "BUILDTOOL_REGISTRY": self.args.registry,
                "BUILDTOOL_REPOSITORY": side.prefix,
                "BUILDTOOL_BASE_IMAGE": self.args.base_image,
                "PYTHONUNBUFFERED": "1",
            }
            config = ["--config", str(self.tree / "pyproject.toml")]
            argv = [str(self.args.buildtool), *config, "build", "--push", "--jobs", str(self.args.jobs)]
        say(f"  {label}: {side.kind} ...")
        run = self.commands.run(f"{label} {side.kind}", argv, env=env, cwd=self.tree)
        say(f"  {label}: {side.kind} {run.seconds:.1f}s  (log {run.log.name})")
        return run

    # -- the engine

    def bench_images(self) -> list[str]:
        """This run's images in the engine: by tag, or by repository digest once a newer build took the tag away."""
        prefix = f"{self.args.registry}/{self.namespace}/"
        listed = self.commands.output(
            ["docker", "image", "ls", "--digests", "--format", "{{.Repository}} {{.Tag}} {{.Digest}}"]
        )
        found = set()
        for line in listed.splitlines():
            repository, tag, digest = line.split()
            if repository.startswith(prefix) and not (tag == "<none>" and digest == "<none>"):
                found.add(f"{repository}:{tag}" if tag != "<none>" else f"{repository}@{digest}")
        return sorted(found)

    def remove_bench_images(self) -> list[str]:
        refs = self.bench_images()
        if refs:
            self.commands.output(["docker", "image", "rm", "--force", *refs])
        return refs

    def wait_for_go(self) -> bool:
        """Cases 2, 4 and 5 empty the whole engine cache: only when the caller said so."""
        if not self.args.empty_engine:
            say("  skipping: this case empties the engine cache (every unused image); pass --empty-engine to allow it")
        return self.args.empty_engine

    def empty_engine(self) -> None:
        """Remove this run's images, then every image no container holds, and the builder cache."""
        self.remove_bench_images()
        self.commands.output(["docker", "image", "prune", "--all", "--force"])
        self.commands.output(["docker", "builder", "prune", "--all", "--force"])
        self.emptied = True
        left = self.commands.output(["docker", "image", "ls", "--all", "--quiet"]).split()
        say(
            "  engine cache emptied"
            + (f"; {len(left)} image(s) stay, held by existing containers ({', '.join(left)})" if left else "")
        )

    def restore_base_image(self) -> None:
        """After emptying, leave the external base image pulled, as the engine had it."""
        if (
            self.emptied
            and not self.commands.output(["docker", "image", "ls", "--quiet", self.args.base_image]).strip()
        ):
            self.commands.output(["docker", "pull", "--quiet", self.args.base_image])

    def close(self) -> None:
        self.registry.close()


# --------------------------------------------------------------------------- reading the output


_PLAN = re.compile(r"^(build|reuse)\s+(\S+)")
_SECTION = re.compile(r"^== (build|push|done)\s*(\S*)")


def buildtool_plan(run: Run) -> dict[str, str]:
    """Image -> build/reuse, from the plan lines buildtool prints on stdout."""
    plan = {}
    for text in run.text():
        match = _PLAN.match(text)
        if match and match[2] in IMAGES:
            plan[match[2]] = match[1]
    if set(plan) != set(IMAGES):
        raise BenchError(f"{run.label}: no plan line for {sorted(set(IMAGES) - set(plan))} (log {run.log})")
    return plan


def buildtool_pushed(run: Run) -> list[str]:
    return sorted({name for name in IMAGES for text in run.text() if re.search(rf"\] {name}\s+pushed ", text)})


@dataclass
class Span:
    start: float
    end: float

    @property
    def seconds(self) -> float:
        return self.end - self.start


@dataclass
class PlainSections:
    builds: dict[str, Span] = field(default_factory=dict)
    pushes: dict[str, Span] = field(default_factory=dict)
    steps_run: dict[str, int] = field(default_factory=dict)  # Dockerfile steps executed (not from cache)
    steps_cached: dict[str, int] = field(default_factory=dict)


def plain_sections(run: Run) -> PlainSections:
    """Split the plain script's output at its '== build/push NAME' markers."""
    out = PlainSections()
    current: tuple[str, str] | None = None
    started = 0.0
    for line in (*run.lines, Line(run.seconds, "== done")):
        match = _SECTION.match(line.text)
        if match:
            if current:
                kind, name = current
                (out.builds if kind == "build" else out.pushes)[name] = Span(started, line.at)
            current = (match[1], match[2]) if match[1] != "done" else None
            started = line.at
            if current and current[0] == "build":
                out.steps_run[current[1]] = out.steps_cached[current[1]] = 0
            continue
        if current and current[0] == "build":
            if "---> Running in" in line.text:
                out.steps_run[current[1]] += 1
            elif "---> Using cache" in line.text:
                out.steps_cached[current[1]] += 1
    return out


@dataclass
class ToolPhases:
    """When buildtool started an image, ran its last Dockerfile step, started its push (beside the check),
    finished its check, and had the content tag in place (the end of its push)."""

    start: float
    built: float
    pushing: float | None = None
    checked: float | None = None
    end: float | None = None


_PROGRESS = re.compile(r"^\[\s*[\d.]+s\] (\S+)\s+(.*)$")
_LAST_STEP = re.compile(r"^step (\d+)/\1: ")


def buildtool_phases(run: Run) -> dict[str, ToolPhases]:
    """Per built image, from buildtool's progress lines (stamped when this script read them)."""
    phases: dict[str, ToolPhases] = {}
    for line in run.lines:
        match = _PROGRESS.match(line.text)
        if not match or match[1] not in IMAGES:
            continue
        name, message = match[1], match[2]
        if message.startswith("build "):
            phases[name] = ToolPhases(start=line.at, built=line.at)
        elif name not in phases:
            continue
        elif _LAST_STEP.match(message):
            phases[name].built = line.at
        elif message.startswith("imports of step"):
            phases[name].checked = line.at
        elif message.startswith("push via "):
            phases[name].pushing = line.at
        elif message.startswith("pushed "):
            phases[name].end = line.at
    return phases


# --------------------------------------------------------------------------- the cases


@dataclass
class CaseResult:
    case: int
    plain: list[float] = field(default_factory=list)
    tool: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    met: bool | None = None
    skipped: str = ""
    to_cold: list[float] = field(default_factory=list)  # case 5: buildtool's time over its cold median
    logs: list[str] = field(default_factory=list)
    pushed: dict[str, list[int]] = field(default_factory=dict)  # case 6: compressed bytes each side pushed

    @property
    def ratios(self) -> list[float]:
        """buildtool / plain, run by run (each pair ran back to back)."""
        return [t / p for t, p in zip(self.tool, self.plain, strict=True)]

    def add(self, runs: Mapping[str, Run]) -> None:
        self.plain.append(runs["plain"].seconds)
        self.tool.append(runs["buildtool"].seconds)
        self.logs += [runs["plain"].log.name, runs["buildtool"].log.name]

    def as_json(self) -> dict[str, object]:
        ratios = self.ratios
        return {
            "case": self.case,
            "title": CASE_TITLES[self.case],
            "skipped": self.skipped or None,
            "plain_seconds": [round(x, 2) for x in self.plain],
            "buildtool_seconds": [round(x, 2) for x in self.tool],
            "paired_ratios": [round(x, 4) for x in ratios],
            "median_ratio": round(median(ratios), 4) if ratios else None,
            "target": RATIO_TARGETS.get(self.case),
            "to_cold_ratios": [round(x, 4) for x in self.to_cold],
            "to_cold_target": FRESH_TO_COLD_TARGET if self.case == 5 else None,
            "met": self.met,
            "notes": self.notes,
            "logs": self.logs,
            **({"pushed_bytes": self.pushed} if self.pushed else {}),
        }


def median(values: list[float]) -> float:
    return statistics.median(values)


def prime(bench: Bench, plain: Side, tool: Side) -> None:
    say("priming: build and push both sides once (engine cache as found; not reported)")
    bench.build(plain, "prime")
    bench.build(tool, "prime")


def case_warm(bench: Bench, plain: Side, tool: Side) -> CaseResult:
    say("case 1: warm no-op")
    result = CaseResult(1)
    for rep in range(bench.args.repeat):
        runs = {}
        for side in (plain, tool) if rep % 2 == 0 else (tool, plain):
            runs[side.kind] = bench.build(side, f"case 1 #{rep + 1}")
        if set(buildtool_plan(runs["buildtool"]).values()) != {"reuse"}:
            raise BenchError(f"case 1: buildtool planned a build on a warm no-op (log {runs['buildtool'].log})")
        result.add(runs)
    result.met = median(result.ratios) <= RATIO_TARGETS[1]
    return result


def case_one_file(bench: Bench, plain: Side, tool: Side) -> CaseResult:
    say(f"case 3: one file of the download image changed ({CHANGED_FILE} gains a RUN line)")
    result = CaseResult(3)
    alone = True
    for rep in range(bench.args.repeat):
        line = f'RUN echo "bench change {bench.run_id} #{rep + 1}" > /etc/bench-change'
        with LineAdded(bench.tree, "download", line):
            before = {side.kind: bench.digests(side) for side in (plain, tool)}
            runs = {}
            for side in (plain, tool) if rep % 2 == 0 else (tool, plain):
                runs[side.kind] = bench.build(side, f"case 3 #{rep + 1}")
            after = {side.kind: bench.digests(side) for side in (plain, tool)}
            result.add(runs)

            sections = plain_sections(runs["plain"])
            ran = [f"{n} ({sections.steps_run[n]} step(s) run, {sections.steps_cached[n]} from cache)" for n in IMAGES]
            plain_changed = sorted(n for n in IMAGES if before["plain"][n] != after["plain"][n])
            plan = buildtool_plan(runs["buildtool"])
            built = sorted(n for n, action in plan.items() if action == "build")
            pushed = buildtool_pushed(runs["buildtool"])
            # buildtool's map now points at new tags: compare the image it says it built with what it reused.
            tool_changed = sorted(n for n in IMAGES if before["buildtool"][n] != after["buildtool"][n])
            result.notes.append(
                f"plain:     built {', '.join(ran)}; pushed {', '.join(sorted(sections.pushes))}; "
                f"digest changed in the registry: {', '.join(plain_changed) or 'none'}"
            )
            result.notes.append(
                f"buildtool: build {', '.join(built) or 'nothing'}; "
                f"reuse {', '.join(n for n in IMAGES if plan[n] == 'reuse') or 'nothing'}; "
                f"pushed {', '.join(pushed) or 'nothing'}; image map entry changed: "
                f"{', '.join(tool_changed) or 'none'}"
            )
            alone = alone and built == ["download"] and pushed == ["download"] and tool_changed == ["download"]
    if not alone:
        result.notes.append("buildtool rebuilt or pushed more than the download image")
    result.met = alone and median(result.ratios) <= RATIO_TARGETS[3]
    return result


def case_empty_cache(bench: Bench, plain: Side, tool: Side) -> CaseResult:
    say("case 2: no-op on an empty engine cache, images already in the registry")
    result = CaseResult(2)
    if not bench.wait_for_go():
        result.skipped = "skipped: needs --empty-engine"
        return result
    runs = {}
    for side in (plain, tool):
        bench.empty_engine()
        runs[side.kind] = bench.build(side, "case 2", pull_cache=True)  # plain: pull, then build --cache-from
    if set(buildtool_plan(runs["buildtool"]).values()) != {"reuse"}:
        raise BenchError(
            f"case 2: buildtool planned a build although the registry holds every image (log {runs['buildtool'].log})"
        )
    result.add(runs)
    result.met = result.ratios[0] <= RATIO_TARGETS[2]
    return result


def case_cold(bench: Bench) -> tuple[CaseResult, list[dict[str, Run]], tuple[Side, Side]]:
    """Each run on fresh prefixes (an empty registry for both sides) and an emptied engine, sides alternating."""
    repeat = bench.args.cold_repeat
    sides = [
        (bench.side("plain", f"cold{rep + 1}-"), bench.side("buildtool", f"cold{rep + 1}-")) for rep in range(repeat)
    ]
    say(
        f"case 4: cold build, {repeat} run(s) (empty engine cache, fresh prefixes {sides[0][0].prefix} and "
        f"{sides[0][1].prefix}{', ...' if repeat > 1 else ''})"
    )
    result = CaseResult(4)
    all_runs: list[dict[str, Run]] = []
    if not bench.wait_for_go():
        result.skipped = "skipped: needs --empty-engine"
        return result, all_runs, sides[-1]
    for rep, (plain, tool) in enumerate(sides):
        runs: dict[str, Run] = {}
        for side in (plain, tool) if rep % 2 == 0 else (tool, plain):
            bench.empty_engine()
            if side is tool:
                # Cold means nothing to start from: a map naming earlier images would let buildtool pull
                # them for cache_from (the fresh-runner path, case 5), which plain cannot do here.
                (bench.tree / "image_map.yaml").unlink(missing_ok=True)
            runs[side.kind] = bench.build(side, f"case 4 #{rep + 1}")
        if set(buildtool_plan(runs["buildtool"]).values()) != {"build"}:
            raise BenchError(f"case 4: buildtool reused an image on a fresh prefix (log {runs['buildtool'].log})")
        result.add(runs)
        all_runs.append(runs)
    result.met = median(result.ratios) <= RATIO_TARGETS[4]
    return result, all_runs, sides[-1]  # the image map holds the last run's images


def case_fresh_runner(bench: Bench, plain: Side, tool: Side, cold: CaseResult | None) -> CaseResult:
    """An emptied engine, the images of the last run in the registry, and one line added at the end of the
    training Dockerfile: plain pulls and builds with --cache-from; buildtool pulls the map's previous training."""
    say(f"case 5: fresh runner, {FRESH_FILE} gains a last line (empty engine cache, images in the registry)")
    result = CaseResult(5)
    if not bench.wait_for_go():
        result.skipped = "skipped: needs --empty-engine"
        return result
    if cold is None or cold.skipped or not cold.tool:
        result.skipped = "skipped: needs case 4 in the same run (its cold time is the reference)"
        return result
    for rep in range(bench.args.fresh_repeat):
        with LineAdded(bench.tree, "training", f'RUN echo "bench fresh {bench.run_id} #{rep + 1}" > /etc/bench-fresh'):
            runs = {}
            for side in (plain, tool) if rep % 2 == 0 else (tool, plain):
                bench.empty_engine()
                runs[side.kind] = bench.build(side, f"case 5 #{rep + 1}", pull_cache=True)
            plan = buildtool_plan(runs["buildtool"])
            if sorted(n for n, a in plan.items() if a == "build") != ["training"]:
                raise BenchError(f"case 5: buildtool should rebuild training alone (log {runs['buildtool'].log})")
            result.add(runs)
            result.to_cold.append(runs["buildtool"].seconds / median(cold.tool))
    result.met = median(result.to_cold) <= FRESH_TO_COLD_TARGET
    return result


def layer_blobs(bench: Bench, ref: str) -> dict[str, int]:
    """Compressed layer digest -> size, of the image the registry serves for `ref`."""
    manifest = bench.registry.platform_manifest(reference.parse(ref.split("@")[0]))
    return {layer["digest"]: int(layer["size"]) for layer in manifest.get("layers", [])}


def added_lock_entry(package: str, hashes: tuple[str, ...]) -> str:
    lines = [f"{package} \\"] + [
        f"    --hash=sha256:{h}" + (" \\" if i < len(hashes) - 1 else "") for i, h in enumerate(hashes)
    ]
    return "\n".join(lines) + "\n    # via -r images/training/requirements.in\n"


def case_package_added(bench: Bench, plain: Side, tool: Side) -> CaseResult:
    """Engine cache warm: a small pure-Python package added to training's lock; both sides build and push.
    Records the bytes each side pushed for training (its layers the registry did not hold before)."""
    say(f"case 6: one small package added to {LOCK} (engine cache warm)")
    result = CaseResult(6)
    path = bench.tree / LOCK
    original = path.read_text()
    # Restored with the lock at the end, as a checkout of both would: the next case then starts from the map
    # the tree's images were built for, not from this case's training.
    map_path = bench.tree / "image_map.yaml"
    map_text = map_path.read_text()
    pushed: dict[str, list[int]] = {"plain": [], "buildtool": []}
    try:
        for rep in range(bench.args.repeat):
            package, hashes = ADDED_PACKAGES[(bench.args.added_from + rep) % len(ADDED_PACKAGES)]
            # In name order, as pip-compile writes it.
            blocks = original.split("\n")
            name = package.split("==")[0]
            at = next(i for i, line in enumerate(blocks) if line and line[0].isalpha() and line.lower() > name)
            path.write_text("\n".join(blocks[:at]) + "\n" + added_lock_entry(package, hashes) + "\n".join(blocks[at:]))
            before = {side.kind: layer_blobs(bench, bench.registry_refs(side)["training"]) for side in (plain, tool)}
            runs = {}
            for side in (plain, tool) if rep % 2 == 0 else (tool, plain):
                runs[side.kind] = bench.build(side, f"case 6 #{rep + 1}")
            result.add(runs)
            for side in (plain, tool):
                after = layer_blobs(bench, bench.registry_refs(side)["training"])
                sent = sum(size for digest, size in after.items() if digest not in before[side.kind])
                pushed[side.kind].append(sent)
            pusher = next(
                (
                    re.search(r"push via .*", line.text)
                    for line in runs["buildtool"].lines
                    if re.search(r"\] training +push via ", line.text)
                ),
                None,
            )
            result.notes.append(
                f"run {rep + 1}, {package}: training's new layers in the registry: plain "
                f"{pushed['plain'][-1] / 1e6:.2f} MB, buildtool {pushed['buildtool'][-1] / 1e6:.3f} MB "
                f"(buildtool: {pusher[0] if pusher else 'no push line'})"
            )
    finally:
        path.write_text(original)
        map_path.write_text(map_text)
        bench.commands.run(
            "case 6 render back", [str(bench.args.buildtool), "--config", str(bench.tree / PYPROJECT), "render"]
        )
    result.pushed = pushed
    result.met = median(result.ratios) <= RATIO_TARGETS[6]
    return result


# --------------------------------------------------------------------------- report


def seconds_cell(values: list[float]) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{median(values):.1f} [{min(values):.1f}-{max(values):.1f}]"


def print_table(results: list[CaseResult], repeat: int, cold_repeat: int) -> None:
    rows = [("case", "plain s", "buildtool s", "paired b/a (median)", "target", "met")]
    for r in sorted(results, key=lambda r: r.case):
        if r.skipped:
            rows.append((CASE_TITLES[r.case], "-", "-", "-", "", r.skipped))
            continue
        ratio = f"{median(r.ratios):.3f}" + (f" ({median(r.to_cold):.3f} of cold)" if r.to_cold else "")
        target = (
            f"<= {FRESH_TO_COLD_TARGET} of cold"
            if r.case == 5
            else f"<= {RATIO_TARGETS.get(r.case)}" + (", download alone" if r.case == 3 else "")
        )
        rows.append(
            (CASE_TITLES[r.case], seconds_cell(r.plain), seconds_cell(r.tool), ratio, target, "yes" if r.met else "NO")
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    say("")
    for i, row in enumerate(rows):
        say(
            "  ".join(
                cell.ljust(width) if j == 0 else cell.rjust(width)
                for j, (cell, width) in enumerate(zip(row, widths, strict=True))
            ).rstrip()
        )
        if i == 0:
            say("  ".join("-" * w for w in widths))
    ran = {r.case for r in results if not r.skipped}
    parts = (
        ([f"cases 1 and 3: {repeat} run(s)"] if ran & {1, 3} else [])
        + ([f"case 4: {cold_repeat} run(s)"] if 4 in ran else [])
        + (["case 2: one run"] if 2 in ran else [])
        + (["case 5: see its runs"] if 5 in ran else [])
    )
    say(f"({'; '.join(parts)}; seconds: median [min-max]; ratios paired run by run; sides alternate which goes first)")


def print_sizes(bench: Bench, plain: Side, tool: Side, where: str) -> None:
    say("")
    say(f"compressed size in the registry (sum of the manifest's layer sizes; images of {where}):")
    rows = [("image", "plain MB", "buildtool MB", "target", "met")]
    for name in IMAGES:
        sizes = []
        for side in (plain, tool):
            ref = reference.parse(bench.registry_refs(side)[name].split("@")[0])
            sizes.append(bench.registry.size(ref).layers / 1e6)
        target = SIZE_TARGETS_MB.get(name)
        rows.append(
            (
                name,
                f"{sizes[0]:.1f}",
                f"{sizes[1]:.1f}",
                f"<= {target:.0f}" if target else "",
                ("yes" if sizes[1] <= target else "NO") if target else "",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for i, row in enumerate(rows):
        say(
            "  ".join(
                cell.ljust(width) if j == 0 else cell.rjust(width)
                for j, (cell, width) in enumerate(zip(row, widths, strict=True))
            ).rstrip()
        )
        if i == 0:
            say("  ".join("-" * w for w in widths))


def print_cold_breakdown(runs: Mapping[str, Run], number: int) -> None:
    """Where the cold case's time goes, per image, in seconds since each command started."""
    plain = plain_sections(runs["plain"])
    tool = buildtool_phases(runs["buildtool"])
    say("")
    say(
        f"case 4 run {number} ({runs['plain'].seconds:.1f}s plain, {runs['buildtool'].seconds:.1f}s buildtool), "
        "where the time goes: start-end (seconds) since each command started"
    )
    rows = [("image", "plain build", "plain push", "buildtool build", "buildtool check", "buildtool push")]

    def cell(start: float | None, end: float | None) -> str:
        return "-" if start is None or end is None else f"{start:.1f}-{end:.1f} ({end - start:.1f})"

    for name in IMAGES:
        b, p, t = plain.builds[name], plain.pushes[name], tool.get(name)
        if t is None:
            rows.append((name, cell(b.start, b.end), cell(p.start, p.end), "-", "-", "-"))
            continue
        rows.append(
            (
                name,
                cell(b.start, b.end),
                cell(p.start, p.end),
                cell(t.start, t.built),
                cell(t.built, t.checked),
                cell(t.pushing, t.end),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        cells = enumerate(zip(row, widths, strict=True))
        say("  " + "  ".join(c.ljust(w) if j == 0 else c.rjust(w) for j, (c, w) in cells))
    first = min((t.start for t in tool.values()), default=0.0)
    say(
        f"  buildtool before its first image starts (startup, context scan, registry lookups): {first:.1f}s; "
        "its build column ends when the last Dockerfile step starts; then the import check and pip check "
        "(check) run beside the push to the staging repository; the push ends when the content tag is in place, "
        "after both"
    )


# --------------------------------------------------------------------------- main


def copy_tree(destination: Path) -> None:
    """The working tree's files (tracked and untracked, not ignored), as they are now."""
    listed = (
        subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=REPO,
            capture_output=True,
            check=True,
        )
        .stdout.decode()
        .split("\0")
    )
    for rel in filter(None, listed):
        source = REPO / rel
        if rel.startswith("bench/") or not source.is_file():
            continue
        target = destination / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", default="1,3,2,4,5", help="cases to run, in this order (default: %(default)s)")
    p.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="runs of cases 1 and 3 per side; the median is reported (default: %(default)s)",
    )
    p.add_argument(
        "--cold-repeat",
        type=int,
        default=3,
        help="runs of case 4 per side, each on fresh prefixes; the median is reported (default: %(default)s)",
    )
    p.add_argument("--fresh-repeat", type=int, default=1, help="runs of case 5 per side (default: %(default)s)")
    p.add_argument("--jobs", type=int, default=2, help="buildtool --jobs (default: %(default)s)")
    p.add_argument(
        "--added-from",
        type=int,
        default=0,
        help="case 6 adds the packages of ADDED_PACKAGES from this index on (default: %(default)s)",
    )
    p.add_argument("--registry", default=os.environ.get("BUILDTOOL_REGISTRY", "127.0.0.1:5000"))
    p.add_argument(
        "--base-image", default=os.environ.get("BUILDTOOL_BASE_IMAGE", "127.0.0.1:5000/buildtool/python:3.11-bookworm")
    )
    p.add_argument("--buildtool", type=Path, default=REPO / ".venv" / "bin" / "buildtool")
    p.add_argument(
        "--empty-engine",
        action="store_true",
        help="allow cases 2, 4 and 5, which remove every image no container uses and the builder cache",
    )
    p.add_argument(
        "--log-dir",
        type=Path,
        help="where the commands' logs go (default: RESULTS/<run id>/ with --results, else a new temporary folder)",
    )
    p.add_argument("--results", type=Path, help="write the raw figures to RESULTS/<run id>.json and keep the logs")
    args = p.parse_args(argv)
    try:
        args.case_list = [int(c) for c in args.cases.split(",") if c.strip()]
    except ValueError:
        p.error(f"--cases: expected numbers 1-6 separated by commas, got {args.cases!r}")
    if not args.case_list or any(c not in CASE_TITLES for c in args.case_list):
        p.error(f"--cases: expected numbers 1-6 separated by commas, got {args.cases!r}")
    if args.repeat < 1 or args.cold_repeat < 1 or args.fresh_repeat < 1:
        p.error("--repeat, --cold-repeat and --fresh-repeat must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    run_id = time.strftime("r%Y%m%d-%H%M%S") + f"-{os.getpid()}"
    log_dir = args.log_dir or (
        args.results / run_id if args.results else Path(tempfile.mkdtemp(prefix=f"build-speed-{run_id}-logs-"))
    )
    log_dir.mkdir(parents=True, exist_ok=True)
    tree = Path(tempfile.mkdtemp(prefix=f"build-speed-{run_id}-tree-"))
    copy_tree(tree)
    shutil.copytree(REPO / "bench" / "plain", tree / PLAIN_COPY)
    bench = Bench(args, run_id, tree, Commands(log_dir))
    engine_version = bench.commands.output(["docker", "version", "--format", "{{.Server.Version}}"]).strip()
    say(f"run {run_id}: engine {engine_version}, registry {args.registry}, base {args.base_image}")
    say(f"tree copy {tree}; logs {log_dir}")

    plain, tool = bench.side("plain"), bench.side("buildtool")
    results: list[CaseResult] = []
    cold_runs: list[dict[str, Run]] = []
    cold: CaseResult | None = None
    started = time.time()
    try:
        if any(c in (1, 2, 3, 6) for c in args.case_list):
            prime(bench, plain, tool)
        for case in args.case_list:
            if case == 1:
                results.append(case_warm(bench, plain, tool))
            elif case == 2:
                results.append(case_empty_cache(bench, plain, tool))
            elif case == 3:
                results.append(case_one_file(bench, plain, tool))
            elif case == 4:
                cold, cold_runs, cold_sides = case_cold(bench)
                results.append(cold)
                if not cold.skipped:
                    plain, tool = cold_sides  # the map now holds these: later cases continue from them
            elif case == 5:
                results.append(case_fresh_runner(bench, plain, tool, cold))
            else:
                results.append(case_package_added(bench, plain, tool))

        print_table(results, args.repeat, args.cold_repeat)
        for r in results:
            if r.case == 6 and not r.skipped:
                say("")
                for note in r.notes:
                    say(f"case 6: {note}")
            if r.case == 3 and not r.skipped:
                say("")
                say(f"case 3, what each side built and pushed ({CHANGED_FILE} changed):")
                for note in dict.fromkeys(r.notes):  # identical runs are shown once
                    runs = [i // 2 + 1 for i, n in enumerate(r.notes) if n == note]
                    say(f"  run{'s' if len(runs) > 1 else ''} {','.join(map(str, runs))}: {note}")
        if cold_runs:
            print_sizes(bench, *cold_sides, "the last run of case 4")
            for number, runs in enumerate(cold_runs, 1):
                print_cold_breakdown(runs, number)
        else:
            print_sizes(bench, plain, tool, "the warm cases")
        if args.results:
            write_results(args, run_id, started, bench, results)
    except BenchError as exc:
        say(f"build_speed: error: {exc}")
        return 1
    finally:
        cleanup(bench, log_dir)
    return 0


def write_results(
    args: argparse.Namespace, run_id: str, started: float, bench: Bench, results: list[CaseResult]
) -> Path:
    """The raw figures of this run, beside its logs: what bench/render_results.py turns into the README table."""
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    document = {
        "run_id": run_id,
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "seconds": round(time.time() - started, 1),
        "commit": commit,
        "engine": bench.commands.output(["docker", "version", "--format", "{{.Server.Version}}"]).strip(),
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "registry": args.registry,
        "base_image": args.base_image,
        "argv": sys.argv[1:],
        "repeat": args.repeat,
        "cold_repeat": args.cold_repeat,
        "fresh_repeat": args.fresh_repeat,
        "logs": f"{run_id}/",
        "cases": [r.as_json() for r in results],
    }
    args.results.mkdir(parents=True, exist_ok=True)
    path = args.results / f"{run_id}.json"
    path.write_text(json.dumps(document, indent=1) + "\n")
    say(f"results: {path}")
    return path


def cleanup(bench: Bench, log_dir: Path) -> None:
    """Remove what the bench tagged in the engine; say what is left where."""
    say("")
    where = f"{bench.args.registry}/{bench.namespace}/"
    try:
        removed = bench.remove_bench_images()
        say(f"cleanup: removed {len(removed)} image tag(s) under {where} from the engine")
        if bench.emptied:
            bench.restore_base_image()
            say(f"cleanup: {bench.args.base_image} is pulled again")
    except BenchError as exc:
        say(
            f"cleanup failed, remove the images under {where} by hand "
            f"(docker image ls | grep {bench.namespace}/): {exc}"
        )
    finally:
        bench.close()
        shutil.rmtree(bench.tree, ignore_errors=True)
    say(
        f"left in the registry: the repositories under {where} (the registry's garbage collector can reclaim "
        f"their blobs); logs in {log_dir}"
    )


if __name__ == "__main__":
    sys.exit(main())
