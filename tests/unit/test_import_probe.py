"""The check that runs in a step's image: its distribution fingerprint, and pip check skipped only for a known one.

The probe is plain Python: here it runs with this interpreter, in-process (the fingerprint, against fake site
folders and this venv) or as the image would run it (`python3 -c SOURCE ...`, with the real `pip check`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from buildtool.build.image import check_image
from buildtool.check import import_probe
from buildtool.check.pip_check_cache import PipCheckCache
from buildtool.engine import ContainerResult
from buildtool.errors import BuildError
from buildtool.inputs import step_imports
from buildtool.interrupt import Token

OTHER = "f" * 64


def add_dist(
    site: Path,
    name: str,
    version: str,
    requires: tuple[str, ...] = (),
    tags: tuple[str, ...] = ("py3-none-any",),
    metadata: str | None = None,
) -> Path:
    folder = site / f"{name.replace('-', '_')}-{version}.dist-info"
    folder.mkdir(parents=True)
    lines = [
        "Metadata-Version: 2.1",
        f"Name: {name}",
        f"Version: {version}",
        *(f"Requires-Dist: {r}" for r in requires),
    ]
    (folder / "METADATA").write_text(metadata if metadata is not None else "\n".join(lines) + "\n")
    (folder / "WHEEL").write_text(
        "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n" + "".join(f"Tag: {t}\n" for t in tags)
    )
    return folder


def sample_site(site: Path, **changes: Any) -> Path:
    add_dist(
        site,
        "alpha",
        changes.get("alpha_version", "1.0"),
        changes.get("alpha_requires", ("beta>=2",)),
        changes.get("alpha_tags", ("py3-none-any",)),
    )
    add_dist(site, "beta", "2.1")
    for name, version in changes.get("extra", ()):
        add_dist(site, name, version)
    return site


def test_the_fingerprint_is_a_function_of_the_distributions_not_of_where_or_in_which_order(tmp_path):
    first = sample_site(tmp_path / "one")
    second = tmp_path / "two"
    add_dist(second, "beta", "2.1")  # created in the other order, in another folder
    add_dist(second, "alpha", "1.0", ("beta>=2",))
    digest = import_probe.fingerprint([str(first)])
    assert digest is not None and len(digest) == 64 and int(digest, 16) >= 0
    assert import_probe.fingerprint([str(second)]) == digest
    # Split over two path entries, the same distributions: the same answer from pip check, the same fingerprint.
    split_a, split_b = tmp_path / "a", tmp_path / "b"
    add_dist(split_a, "alpha", "1.0", ("beta>=2",))
    add_dist(split_b, "beta", "2.1")
    assert import_probe.fingerprint([str(split_a), str(split_b)]) == digest


@pytest.mark.parametrize(
    "change",
    [
        {"alpha_version": "1.1"},
        {"alpha_requires": ("beta>=3",)},
        {"alpha_requires": ("beta>=2", "gamma")},
        {"alpha_requires": ('beta>=2; python_version < "3"',)},
        {"alpha_requires": ()},
        {"alpha_tags": ("cp27-cp27mu-manylinux1_x86_64",)},
        {"extra": (("gamma", "0.1"),)},
    ],
    ids=["version", "requirement", "added-requirement", "marker", "no-requirements", "wheel-tag", "added-dist"],
)
def test_anything_pip_check_reads_changes_the_fingerprint(tmp_path, change):
    base = import_probe.fingerprint([str(sample_site(tmp_path / "base"))])
    assert import_probe.fingerprint([str(sample_site(tmp_path / "changed", **change))]) != base


def test_a_removed_distribution_changes_the_fingerprint(tmp_path):
    site = sample_site(tmp_path / "site")
    before = import_probe.fingerprint([str(site)])
    for item in (site / "beta-2.1.dist-info").iterdir():
        item.unlink()
    (site / "beta-2.1.dist-info").rmdir()
    assert import_probe.fingerprint([str(site)]) not in (None, before)


def test_no_fingerprint_when_the_answer_might_depend_on_more(tmp_path):
    """None, so that pip check runs: duplicates (which one pip takes depends on the order it finds them),
    a distribution without a name or version, metadata that cannot be read, a legacy editable install."""
    dup_a, dup_b = sample_site(tmp_path / "a"), tmp_path / "b"
    add_dist(dup_b, "Alpha_", "1.0")
    add_dist(dup_b, "ALPHA", "9.9")  # the same project as "alpha" once names are normalized
    assert import_probe.fingerprint([str(dup_a), str(dup_b)]) is None
    no_version = sample_site(tmp_path / "nov")
    add_dist(no_version, "gamma", "1", metadata="Metadata-Version: 2.1\nName: gamma\n")
    assert import_probe.fingerprint([str(no_version)]) is None
    no_name = sample_site(tmp_path / "non")
    add_dist(no_name, "gamma", "1", metadata="Metadata-Version: 2.1\nVersion: 1\n")
    assert import_probe.fingerprint([str(no_name)]) is None
    unreadable = sample_site(tmp_path / "unr")
    folder = add_dist(unreadable, "gamma", "1")
    (folder / "METADATA").write_bytes(b"Metadata-Version: 2.1\nName: gamma\nVersion: 1\nSummary: \xff\xfe\n")
    assert import_probe.fingerprint([str(unreadable)]) is None
    legacy_editable = sample_site(tmp_path / "egl")
    (legacy_editable / "gamma.egg-link").write_text(str(tmp_path / "src") + "\n.\n")  # pip reads its target
    assert import_probe.fingerprint([str(legacy_editable)]) is None


def test_the_fingerprint_of_this_venv(tmp_path):
    import sysconfig

    site = sysconfig.get_paths()["purelib"]
    digest = import_probe.fingerprint([site])
    assert digest is not None and digest == import_probe.fingerprint([site])
    assert digest != import_probe.fingerprint([str(sample_site(tmp_path / "s"))])


# --- the probe as the image runs it -------------------------------------------------------------------------


def run_probe(cwd: Path, known: list[str], modules: list[str], pythonpath: Path | None = None) -> str:
    """`python3 -c SOURCE KNOWN MODULE...` with this interpreter, from an empty folder (the image's WORKDIR)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    command = step_imports.probe_command(modules, known)
    assert command[0] == "python3"
    result = subprocess.run(
        [sys.executable, *command[1:]], cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def subprocess_path(cwd: Path) -> list[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run(
        [sys.executable, "-c", "import json, sys; print(json.dumps(sys.path))"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [entry or str(cwd) for entry in json.loads(out)]


def test_the_probe_runs_pip_check_unless_its_fingerprint_is_known(tmp_path):
    ran = step_imports.parse_probe(run_probe(tmp_path, [], ["json"]))
    assert ran.pip_check_code == 0 and "No broken requirements" in ran.pip_check_output
    assert ran.fingerprint is not None and not ran.pip_check_skipped
    # The probe hashes what pip check (same interpreter, same folder) sees: sys.path.
    assert ran.fingerprint == import_probe.fingerprint(subprocess_path(tmp_path))

    unknown = step_imports.parse_probe(run_probe(tmp_path, [OTHER], ["json"]), [OTHER])
    assert unknown.pip_check_code == 0 and unknown.fingerprint == ran.fingerprint

    known = [OTHER, ran.fingerprint]
    skipped = step_imports.parse_probe(run_probe(tmp_path, known, ["json", "no_such_module_here"]), known)
    assert skipped.pip_check_skipped and skipped.pip_check_output == ""
    # The step's imports run all the same.
    assert list(skipped.failed_imports) == ["no_such_module_here"]


# --- parse_probe: what the host accepts from the container -----------------------------------------------

FP = "0" * 64


def probe_line(data: object) -> str:
    return "step noise\n" + import_probe.MARKER + json.dumps(data) + "\n"


HOSTILE_OUTPUT = [
    ("skip-unknown", probe_line({"imports": {}, "fingerprint": OTHER, "pip_check": None}), "not known to pass it"),
    ("skip-no-fingerprint", probe_line({"imports": {}, "fingerprint": None, "pip_check": None}), "not known"),
    ("skip-no-keys", probe_line({"imports": {}}), "not known to pass it"),
    (
        "fingerprint-not-hex",
        probe_line({"imports": {}, "fingerprint": "ABCDEF" * 10 + "0000", "pip_check": None}),
        "malformed",
    ),
    ("fingerprint-number", probe_line({"imports": {}, "fingerprint": 7, "pip_check": [0, ""]}), "malformed"),
    ("imports-list", probe_line({"imports": ["x"], "fingerprint": FP, "pip_check": [0, ""]}), "malformed"),
    ("imports-values", probe_line({"imports": {"x": 1}, "fingerprint": FP, "pip_check": [0, ""]}), "malformed"),
    ("pip-check-short", probe_line({"imports": {}, "fingerprint": FP, "pip_check": [0]}), "malformed"),
    ("pip-check-bool", probe_line({"imports": {}, "fingerprint": FP, "pip_check": [False, ""]}), "malformed"),
    ("pip-check-str-code", probe_line({"imports": {}, "fingerprint": FP, "pip_check": ["0", ""]}), "malformed"),
    ("pip-check-dict", probe_line({"imports": {}, "fingerprint": FP, "pip_check": {"0": ""}}), "malformed"),
    ("not-an-object", probe_line([1, 2]), "malformed"),
    ("not-json", import_probe.MARKER + "{oops\n", "malformed"),
    ("too-deep", import_probe.MARKER + "[" * 100_000 + "]" * 100_000 + "\n", "malformed"),
    ("nothing", "python3: not found\n", "printed no result"),
]


@pytest.mark.parametrize("output, message", [row[1:] for row in HOSTILE_OUTPUT], ids=[row[0] for row in HOSTILE_OUTPUT])
def test_a_result_the_probe_did_not_give_is_refused(output, message):
    with pytest.raises(BuildError, match=message) as caught:
        step_imports.parse_probe(output, [FP])
    assert "\n" not in str(caught.value)


def test_the_last_result_line_is_the_probes_own():
    fake = {"imports": {}, "fingerprint": FP, "pip_check": None}  # printed by a step module at import
    real = {"imports": {}, "fingerprint": FP, "pip_check": [1, "x 1 requires y"]}
    result = step_imports.parse_probe(probe_line(fake) + probe_line(real), [FP])
    assert result.pip_check_code == 1


# --- build.check_image: the cache around the probe ---------------------------------------------------------


class LocalEngine:
    """Runs the check's command with this interpreter in a folder of its own: the probe and pip check are the
    real ones; only the container is not (unit tests run without an engine)."""

    def __init__(self, cwd: Path, pythonpath: Path | None = None) -> None:
        self.cwd, self.pythonpath, self.commands = cwd, pythonpath, []

    def call(self, image: str, command: list[str], *, token: Token | None = None, **_: Any) -> ContainerResult:
        self.commands.append(command)
        return ContainerResult(
            0, run_probe(self.cwd, command[3].split(",") if command[3] else [], command[4:], self.pythonpath)
        )


IMAGE = SimpleNamespace(name="download", step="download_training_dataset", tagged="127.0.0.1:5000/t/download:in-1")


def check(engine: LocalEngine, cache: PipCheckCache, modules: tuple[str, ...] = ("json",)) -> list[str]:
    events: list[str] = []
    check_image(engine, IMAGE, list(modules), lambda _name, message: events.append(message), Token(), cache)
    return events


def test_check_image_runs_pip_check_once_then_skips_it_for_the_same_distributions(tmp_path):
    cache = PipCheckCache(tmp_path / "cache" / "buildtool" / "pip-check.json")
    engine = LocalEngine(tmp_path)
    assert check(engine, cache) == ["imports of step download_training_dataset load (json); pip check passed"]
    recorded = json.loads(cache.path.read_text())["fingerprints"]
    assert len(recorded) == 1
    assert check(engine, cache) == [
        "imports of step download_training_dataset load (json); "
        "pip check: same distributions as an image already checked"
    ]
    assert engine.commands[-1][3] == recorded[0]  # the known fingerprints went to the probe
    # The imports still run when pip check is skipped.
    with pytest.raises(BuildError, match="step download_training_dataset imports no_such_module_here: not installed"):
        check(engine, cache, ("json", "no_such_module_here"))


@pytest.mark.parametrize(
    "content",
    [
        b"{corrupt",
        json.dumps({"version": 1, "fingerprints": ["z" * 64]}).encode(),
        json.dumps({"version": 1, "fingerprints": [OTHER]}).encode(),
    ],
    ids=["malformed", "malformed-entry", "unknown-fingerprint"],
)
def test_a_malformed_cache_or_an_unknown_fingerprint_means_pip_check_runs(tmp_path, content):
    path = tmp_path / "pip-check.json"
    path.write_bytes(content)
    cache = PipCheckCache(path)
    assert check(LocalEngine(tmp_path), cache)[-1].endswith("; pip check passed")
    recorded = json.loads(path.read_text())["fingerprints"]
    assert recorded[-1] != OTHER and len(recorded) == (2 if OTHER in recorded else 1)


def test_a_failed_pip_check_fails_the_image_and_is_not_recorded(tmp_path):
    site = tmp_path / "site"
    add_dist(site, "needs-missing", "1.0", ("not-installed-anywhere>=1",))
    run_in = tmp_path / "workdir"
    run_in.mkdir()
    cache = PipCheckCache(tmp_path / "pip-check.json")
    with pytest.raises(
        BuildError,
        match=r"image download: `pip check` found broken requirements: "
        r"needs-missing 1.0 requires not-installed-anywhere",
    ) as caught:
        check(LocalEngine(run_in, pythonpath=site), cache)
    assert "\n" not in str(caught.value)
    assert not cache.path.exists()
    # A good environment next to it records its own fingerprint only.
    check(LocalEngine(run_in), cache)
    broken = step_imports.parse_probe(run_probe(run_in, [], [], site))
    assert broken.pip_check_code == 1 and broken.fingerprint not in cache.known() and len(cache.known()) == 1


def test_a_probe_that_claims_a_skip_it_was_not_offered_fails_the_image(tmp_path):
    class Lying(LocalEngine):
        def call(self, image: str, command: list[str], **_: Any) -> ContainerResult:
            return ContainerResult(0, probe_line({"imports": {}, "fingerprint": OTHER, "pip_check": None}))

    cache = PipCheckCache(tmp_path / "pip-check.json")
    with pytest.raises(BuildError, match="^image download: the import check says it skipped pip check"):
        check(Lying(tmp_path), cache)
    assert not cache.path.exists()
