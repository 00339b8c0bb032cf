"""Rendered Dockerfiles and layer locks: the real template and training lock, rendered in a copy of the project."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from buildtool import cli, config
from buildtool.errors import ConfigError, RenderedStaleError, TemplateError
from buildtool.inputs import layers, render
from buildtool.inputs.context import file_sha256
from buildtool.lock import image_map

from ..conftest import REPO, write_project
from .conftest import FakeSetup

# The repository's own training image settings, as pyproject.toml has them.
TRAINING = """
[tool.buildtool.images.training]
context = "images/training"
base = "base"
step = "training"
template = "step.Dockerfile.j2"
requirements = "requirements.txt"
layers = [["tensorflow-cpu"], ["scikit-learn"]]

[tool.buildtool.images.training.template_vars]
summary = "TensorFlow."
prune = ["tensorflow/include"]
extra = []
uv_requirement = "uv==0.13.9 --hash=sha256:d7f459fe4fd247d830351c75686d3996ace3c6f3f728eb0e85a30b7ada0cef19"
"""
# A small pure-Python package, hash-locked, that no other package requires.
ADDED = """colorama==0.4.6 \\
    --hash=sha256:08695f5cb7ed6e0531a20572697297273c47b8cae5a63ffc6d6ed5c201be6e44
    # via -r images/training/requirements.in
"""


def templated_project(root: Path, training: str = TRAINING) -> Path:
    path = write_project(root)
    text = path.read_text()
    start = text.index("[tool.buildtool.images.training]")
    end = text.index("[tool.buildtool.images.upload]")
    path.write_text(text[:start] + training.strip() + "\n\n" + text[end:])
    shutil.copytree(REPO / "images" / "templates", root / "images" / "templates")
    shutil.copy(REPO / "images" / "training" / "requirements.txt", root / "images" / "training" / "requirements.txt")
    return path


def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted((root / "images").rglob("*")) if p.is_file()}


def test_render_is_deterministic_and_names_its_template(tmp_path):
    path = templated_project(tmp_path)
    loaded = config.load(path)
    first = render.write(loaded)
    assert {p.relative_to(tmp_path).as_posix() for p in first} == {
        "images/training/Dockerfile",
        "images/training/layers/1-tensorflow-cpu.txt",
        "images/training/layers/2-scikit-learn.txt",
        "images/training/layers/3-rest.txt",
    }
    before = files(tmp_path)
    assert render.write(loaded) == []  # nothing differs: nothing written
    assert files(tmp_path) == before
    dockerfile = (tmp_path / "images/training/Dockerfile").read_text()
    assert dockerfile.startswith("# Rendered from images/templates/step.Dockerfile.j2 for image training")
    assert "run: buildtool render training\n" in dockerfile
    render.require_current(loaded)


def test_layers_hold_tensorflow_first_then_scikit_learn_and_every_package_once(tmp_path):
    loaded = config.load(templated_project(tmp_path))
    render.write(loaded)
    lock = (tmp_path / "images/training/requirements.txt").read_text()
    packages = layers.parse_lock(lock, "requirements.txt")
    first, second, rest = layers.groups(packages, (("tensorflow-cpu",), ("scikit-learn",)), "x", "layers")
    names = [{p.name for p in g.packages} for g in (first, second, rest)]
    assert {"tensorflow-cpu", "keras", "absl-py", "numpy"} <= names[0]
    assert {"scikit-learn", "scipy", "joblib"} <= names[1] and not names[1] & names[0]
    assert names[2] == set()
    assert set().union(*names) == {p.name for p in packages}
    dockerfile = (tmp_path / "images/training/Dockerfile").read_text()
    # Each group is installed alone, hash-checked and without dependency resolution; then one pip check.
    installs = [line for line in dockerfile.splitlines() if line.strip().startswith("-r /tmp/layers/")]
    assert len(installs) == 2 and dockerfile.count("--require-hashes --no-deps \\\n        -r /tmp/layers/") == 2
    assert "3-rest" not in dockerfile  # an empty group has no layer
    order = [dockerfile.index(text) for text in ("1-tensorflow-cpu", "2-scikit-learn", "RUN python3 -m pip check")]
    assert order == sorted(order)
    for line in (tmp_path / "images/training/layers/1-tensorflow-cpu.txt").read_text().splitlines()[2:]:
        assert "==" in line or line.strip().startswith("--hash=sha256:")


def test_a_package_added_to_the_lock_changes_only_the_last_layer(tmp_path):
    loaded = config.load(templated_project(tmp_path))
    render.write(loaded)
    before = files(tmp_path)
    lock = tmp_path / "images/training/requirements.txt"
    text = lock.read_text()
    lock.write_text(text.replace("cloudpickle==", ADDED + "cloudpickle==", 1))
    with pytest.raises(RenderedStaleError, match=r"images/training/layers/3-rest.txt differs"):
        render.require_current(loaded)
    changed = {p.relative_to(tmp_path).as_posix() for p in render.write(loaded)}
    assert changed == {"images/training/layers/3-rest.txt", "images/training/Dockerfile"}
    after = files(tmp_path)
    for name in ("images/training/layers/1-tensorflow-cpu.txt", "images/training/layers/2-scikit-learn.txt"):
        assert after[name] == before[name]
    assert b"colorama==0.4.6" in after["images/training/layers/3-rest.txt"]
    # The Dockerfile grows by the last layer: every line before it is the same, so the builder reuses those layers.
    old, new = before["images/training/Dockerfile"].decode(), after["images/training/Dockerfile"].decode()
    cut = old.index("# One check of the whole")
    assert new[:cut] == old[:cut] and "COPY layers/3-rest.txt" in new[cut:]


@pytest.mark.parametrize(
    "edit, expected",
    [
        (lambda p: p.write_text(p.read_text() + "RUN echo hand\n"), "images/training/Dockerfile differs"),
        (lambda p: p.unlink(), "images/training/Dockerfile missing"),
        (lambda p: (p.parent / "layers/9-old.txt").write_text("x\n"), "9-old.txt is left over"),
        (
            lambda p: (p.parent / "layers/1-tensorflow-cpu.txt").write_text("absl-py==9\n"),
            "1-tensorflow-cpu.txt differs",
        ),
    ],
)
def test_check_and_build_refuse_a_stale_or_hand_edited_rendering(tmp_path, capsys, edit, expected):
    path = templated_project(tmp_path)
    render.write(config.load(path))
    edit(tmp_path / "images/training/Dockerfile")
    before = files(tmp_path)
    for command in (["check"], ["build", "--dry-run"]):
        assert cli.main(["--config", str(path), *command]) == 14
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("buildtool: error: ") and expected in err
        assert "buildtool render" in err
    assert files(tmp_path) == before  # check and build write nothing
    assert cli.main(["--config", str(path), "render", "training"]) == 0
    render.require_current(config.load(path))


def template_case(tmp_path: Path, body: str) -> tuple[Path, dict[str, bytes]]:
    training = TRAINING.replace('template = "step.Dockerfile.j2"', 'template = "bad.j2"')
    path = templated_project(tmp_path, training)
    (tmp_path / "images/templates/bad.j2").write_text(body)
    return path, files(tmp_path)


@pytest.mark.parametrize(
    "body, expected",
    [
        ("FROM x\n\nRUN {{ nope }}\n", "images/templates/bad.j2:3: undefined variable 'nope' (image training)"),
        ("FROM x\nRUN {{ summary.nope }}\n", "images/templates/bad.j2:2: undefined variable 'nope'"),
        ("FROM x\n{% for %}\n", "images/templates/bad.j2:2: syntax error"),
        ("FROM x\n{{ ''.__class__.__mro__[1].__subclasses__() }}\n", "images/templates/bad.j2:2: SecurityError"),
        ("FROM x\n{% include '/etc/passwd' %}\n", "images/templates/bad.j2:2: TemplateNotFound"),
        ("FROM x\n{% include '../../pyproject.toml' %}\n", "TemplateNotFound"),
    ],
)
def test_a_template_error_names_template_line_and_variable(tmp_path, capsys, body, expected):
    path, before = template_case(tmp_path, body)
    with pytest.raises(TemplateError):
        render.write(config.load(path))
    assert cli.main(["--config", str(path), "render"]) == 15
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and expected in err, err
    assert files(tmp_path) == before  # nothing rendered, nothing written


def test_a_missing_template_is_a_template_error(tmp_path, capsys):
    path = templated_project(tmp_path, TRAINING.replace("step.Dockerfile.j2", "gone.j2"))
    assert cli.main(["--config", str(path), "check"]) == 15
    assert "images/templates/gone.j2: no such template" in capsys.readouterr().err


@pytest.mark.parametrize(
    "old, new, expected",
    [
        (
            'template = "step.Dockerfile.j2"',
            'template = "../x.j2"',
            "images.training.template: '../x.j2' is not a file",
        ),
        ('requirements = "requirements.txt"', 'requirements = "../../pyproject.toml"', "images.training.requirements"),
        ('layers = [["tensorflow-cpu"], ["scikit-learn"]]', "layers = [[]]", "images.training.layers[0]"),
        ('layers = [["tensorflow-cpu"], ["scikit-learn"]]', 'layers = ["tensorflow-cpu"]', "images.training.layers[0]"),
        ('step = "training"', 'step = "training"\ninstaller = "conda"', "images.training.installer: 'conda'"),
    ],
)
def test_template_keys_are_checked_when_loading(tmp_path, old, new, expected):
    path = templated_project(tmp_path)
    path.write_text(path.read_text().replace(old, new, 1))
    with pytest.raises(ConfigError, match=expected.replace("[", r"\[").replace("]", r"\]").replace(".", r"\.")):
        config.load(path)


@pytest.mark.parametrize(
    "line, expected",
    [
        ('api_token = "x"', "images.training.template_vars.api_token: looks like a secret"),
        (
            'extra = ["RUN pip download --index-url https://me:hunter2@pypi.example.com/simple x"]',
            "images.training.template_vars.extra.0: the value carries a user:password@ credential",
        ),
    ],
)
def test_a_secret_in_the_template_variables_is_refused(tmp_path, capsys, line, expected):
    path = templated_project(
        tmp_path, TRAINING.replace("extra = []", line if line.startswith("extra") else f"extra = []\n{line}")
    )
    assert cli.main(["--config", str(path), "render"]) == 2
    err = capsys.readouterr().err
    assert expected in err and "hunter2" not in err and err.count("\n") == 1
    assert not (tmp_path / "images/training/layers").exists()  # nothing rendered


def test_template_keys_without_a_template_are_refused(tmp_path):
    path = write_project(tmp_path, '\n[tool.buildtool.images.base.template_vars]\nx = "1"\n')
    with pytest.raises(ConfigError, match="images.base.template_vars: only an image with a template uses it"):
        config.load(path)


def test_a_layer_root_missing_from_the_lock_names_the_key(tmp_path):
    path = templated_project(tmp_path, TRAINING.replace('["scikit-learn"]', '["sckit-learn"]'))
    with pytest.raises(ConfigError, match=r"images.training.layers\[1\] names 'sckit-learn'"):
        render.write(config.load(path))


@pytest.mark.parametrize("line", ["numpy>=1 \\\n    --hash=sha256:00\n", "numpy==1.0\n", "-e ./pkg\n"[3:]])
def test_a_lock_line_not_pinned_and_hashed_is_refused(line):
    with pytest.raises(ConfigError, match="requirements.txt:1: .* is not pinned with == and hashed"):
        layers.parse_lock(line, "requirements.txt")


def test_the_repository_renderings_are_current():
    """The committed Dockerfiles and layer locks are what the templates render now."""
    assert render.problems(config.load(REPO / "pyproject.toml")) == []


# --- build renders what is merely stale, and refuses a hand edit ------------------------------------------------


def templated_fake(fake: FakeSetup) -> Path:
    """The fake setup's project with training rendered from the real template, built and pushed once."""
    text = fake.project.read_text()
    start, end = text.index("[tool.buildtool.images.training]"), text.index("[tool.buildtool.images.upload]")
    fake.project.write_text(text[:start] + TRAINING.strip() + "\n\n" + text[end:])
    shutil.copytree(REPO / "images" / "templates", fake.root / "images" / "templates")
    shutil.copy(REPO / "images" / "training" / "requirements.txt", fake.root / "images" / "training")
    assert fake.cli("render")[0] == 0
    code, _, err = fake.cli("build", "--push")
    assert code == 0, err
    return fake.root / "images" / "training" / "Dockerfile"


def set_extra(fake: FakeSetup, line: str) -> None:
    text = fake.project.read_text()
    assert "extra = []" in text
    fake.project.write_text(text.replace("extra = []", f"extra = [{line!r}]"))


def training_builds(fake: FakeSetup) -> int:
    return sum(1 for b in fake.engine.builds if "/training:" in b.tag)


@pytest.mark.parametrize(
    "change, rendered, rebuilt",
    [
        (lambda fake: set_extra(fake, "RUN echo changed"), ["images/training/Dockerfile"], 1),
        # Rendered to the bytes the registry's image was built from: reused, not rebuilt.
        (lambda fake: (fake.root / "images/training/Dockerfile").unlink(), ["images/training/Dockerfile"], 0),
        (
            lambda fake: (fake.root / "images/training/requirements.txt").write_text(
                (fake.root / "images/training/requirements.txt").read_text() + ADDED
            ),
            ["images/training/Dockerfile", "images/training/layers/3-rest.txt"],
            1,
        ),
    ],
    ids=["variable", "missing", "lock"],
)
def test_build_renders_a_stale_file_again_and_builds_it(fake: FakeSetup, change, rendered, rebuilt) -> None:
    dockerfile = templated_fake(fake)
    builds = training_builds(fake)
    change(fake)
    code, out, err = fake.cli("build", "--push")
    assert code == 0, err
    said = [line for line in out.splitlines() if line.startswith("rendered ")]
    assert said == [f"rendered {path} again (its template, variables or lock changed)" for path in rendered]
    render.require_current(config.load(fake.project))  # what was built is what the template renders now
    assert training_builds(fake) == builds + rebuilt
    locked = image_map.load(fake.image_map).images["training"]
    assert locked.inputs["file:Dockerfile"] == file_sha256(dockerfile)[:16]
    assert fake.cli("build", "--push")[1].count("rendered ") == 0  # rendered once: the next build renders nothing


@pytest.mark.parametrize(
    "edit, named",
    [
        (lambda root: (root / "images/training/Dockerfile").write_text("FROM scratch\n"), "Dockerfile"),
        (
            lambda root: (root / "images/training/layers/1-tensorflow-cpu.txt").write_text("absl-py==9\n"),
            "layers/1-tensorflow-cpu.txt",
        ),
        (lambda root: (root / "images/training/layers/9-old.txt").write_text("x\n"), "layers/9-old.txt"),
    ],
    ids=["dockerfile", "layer-lock", "stray-layer-lock"],
)
@pytest.mark.parametrize("also_stale", [False, True], ids=["alone", "with-a-stale-variable"])
def test_build_refuses_a_hand_edited_rendering_and_writes_nothing(fake: FakeSetup, edit, named, also_stale) -> None:
    templated_fake(fake)
    builds, pushes = len(fake.engine.builds), len(fake.engine.pushes)
    edit(fake.root)
    if also_stale:
        set_extra(fake, "RUN echo changed")
    before, map_before = files(fake.root), fake.image_map.read_bytes()
    code, out, err = fake.cli("build", "--push")
    assert code == 14
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("buildtool: error: images/training/" + named), err
    assert "edited by hand" in lines[0] and "buildtool render training" in lines[0]
    assert "rendered " not in out
    assert files(fake.root) == before and fake.image_map.read_bytes() == map_before
    assert (len(fake.engine.builds), len(fake.engine.pushes)) == (builds, pushes)
