"""Configuration traps: settings that would silently send images elsewhere, send the wrong files to the
engine, overwrite the lock, or record a secret in an image, are refused (exit 2) naming the key.

Each row edits pyproject.toml (or the tree, or the command line) of a freshly locked project and runs
the command; the map and pipeline.yaml stay byte-identical and no secret of the row is printed.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from .conftest import Guard, assert_refused, run_in_process

CONFIG_CODE = 2
SECRET = "s3cr3t-Pw-91x"


def setting(root: Path, line: str) -> None:
    """Add a top-level [tool.buildtool] line."""
    path = root / "pyproject.toml"
    path.write_text(path.read_text().replace("[tool.buildtool]\n", f"[tool.buildtool]\n{line}\n", 1))


def replace(root: Path, old: str, new: str) -> None:
    path = root / "pyproject.toml"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def build_arg(name: str, value: str = "1") -> Callable[[Path], None]:
    return lambda root: replace(root, 'build_args = { EXTRA = "1" }', f'build_args = {{ {name} = "{value}" }}')


def context_outside(root: Path) -> None:
    outside = root.parent / "outside"
    outside.mkdir()
    (outside / "Dockerfile").write_text("FROM scratch\n")
    (outside / ".dockerignore").write_text("*\n")
    replace(root, 'context = "images/upload"', 'context = "../outside"')


def context_link_outside(root: Path) -> None:
    """A context inside the repository that is a link to a folder outside it (the home folder, say)."""
    outside = root.parent / "home"
    outside.mkdir()
    (outside / "Dockerfile").write_text("FROM scratch\n")
    (outside / ".dockerignore").write_text("*\n")
    (root / "images" / "linked").symlink_to(outside)
    replace(root, 'context = "images/upload"', 'context = "images/linked"')


def context_link_loop(root: Path) -> None:
    (root / "loop1").symlink_to(root / "loop2")
    (root / "loop2").symlink_to(root / "loop1")
    replace(root, 'context = "images/upload"', 'context = "loop1"')


def no_dockerignore(root: Path) -> None:
    (root / "images" / "download" / ".dockerignore").unlink()


def dockerignore_a_folder(root: Path) -> None:
    path = root / "images" / "download" / ".dockerignore"
    path.unlink()
    path.mkdir()


ROWS: list[tuple[str, Callable[[Path], None], str, tuple[str, ...]]] = [
    (
        "registry-one-label",
        lambda r: replace(r, 'registry = "127.0.0.1:5000"', 'registry = "mycompany"'),
        "registry: 'mycompany' has no dot, port or 'localhost', so images would go to docker.io/mycompany/",
        (),
    ),
    (
        "registry-one-label-with-path",
        lambda r: replace(r, 'registry = "127.0.0.1:5000"', 'registry = "mycompany/ml"'),
        "registry: 'mycompany/ml' has no dot, port or 'localhost'",
        (),
    ),
    ("context-outside", context_outside, "images.upload.context: folder", ()),
    ("context-link-outside", context_link_outside, "lies outside the repository", ()),
    ("context-link-loop", context_link_loop, "loop1 cannot be resolved (RuntimeError); fix the link", ()),
    ("context-without-dockerignore", no_dockerignore, "images.download.context: no .dockerignore in", ()),
    ("dockerignore-a-folder", dockerignore_a_folder, "images.download.context: no .dockerignore in", ()),
    (
        "output-is-the-map",
        lambda r: setting(r, 'output = "image_map.yaml"'),
        "output: 'image_map.yaml' is also the image_map",
        (),
    ),
    (
        "map-is-the-output",
        lambda r: setting(r, 'image_map = "./pipeline.yaml"'),
        "output: 'pipeline.yaml' is also the image_map",
        (),
    ),
    (
        "output-outside",
        lambda r: setting(r, 'output = "../pipeline.yaml"'),
        "output: '../pipeline.yaml' lies outside the repository",
        (),
    ),
    (
        "map-absolute-outside",
        lambda r: setting(r, 'image_map = "/tmp/image_map.yaml"'),
        "image_map: '/tmp/image_map.yaml' lies outside the repository",
        (),
    ),
    ("output-a-folder", lambda r: setting(r, 'output = "images"'), "output: 'images' is a folder", ()),
    (
        "output-the-config",
        lambda r: setting(r, 'output = "pyproject.toml"'),
        "output: 'pyproject.toml' is the configuration file itself",
        (),
    ),
    ("build-arg-pat", build_arg("GITHUB_PAT", SECRET), "build_args.GITHUB_PAT: looks like a secret", (SECRET,)),
    ("build-arg-auth", build_arg("NPM_AUTH", SECRET), "build_args.NPM_AUTH: looks like a secret", (SECRET,)),
    ("build-arg-authtoken", build_arg("NPM_AUTHTOKEN", SECRET), "build_args.NPM_AUTHTOKEN: looks like", (SECRET,)),
    ("build-arg-credential", build_arg("GCP_CREDENTIALS", SECRET), "build_args.GCP_CREDENTIALS: looks like", (SECRET,)),
    ("build-arg-key", build_arg("SIGNING_KEY", SECRET), "build_args.SIGNING_KEY: looks like a secret", (SECRET,)),
    ("build-arg-pass", build_arg("DB_PASS", SECRET), "build_args.DB_PASS: looks like a secret", (SECRET,)),
    ("build-arg-token", build_arg("HF_TOKEN", SECRET), "build_args.HF_TOKEN: looks like a secret", (SECRET,)),
    (
        "build-arg-url-credential",
        build_arg("PIP_INDEX_URL", f"https://user:{SECRET}@pypi.example.com/simple"),
        "build_args.PIP_INDEX_URL: the value carries a user:password@ credential",
        (SECRET,),
    ),
    (
        "build-arg-git-credential",
        build_arg("REPO", f"git+https://oauth2:{SECRET}@git.example.com/x.git"),
        "build_args.REPO: the value carries a user:password@ credential",
        (SECRET,),
    ),
    (
        "external-image-with-tag",
        lambda r: setting(r, 'external_images = ["gcr.io/team/component:1.0"]'),
        "external_images[0]: 'gcr.io/team/component:1.0' names a tag or digest; list the repository only",
        (),
    ),
    (
        "external-image-with-digest",
        lambda r: setting(r, f'external_images = ["gcr.io/team/c@sha256:{"a" * 64}"]'),
        "external_images[0]: 'gcr.io/team/c@sha256:",
        (),
    ),
    (
        "external-image-buildtool-s-own",
        lambda r: setting(r, 'external_images = ["127.0.0.1:5000/t/training"]'),
        "external_images[0]: '127.0.0.1:5000/t/training' is under 127.0.0.1:5000/t, where buildtool pushes",
        (),
    ),
    (
        "external-image-not-a-repository",
        lambda r: setting(r, 'external_images = ["gcr.io/x y"]'),
        "external_images[0]: 'gcr.io/x y' is not an image repository",
        (),
    ),
    (
        "external-images-a-string",
        lambda r: setting(r, 'external_images = "gcr.io/team/component"'),
        "external_images: expected a list, got str",
        (),
    ),
    (
        "steps-same-component-name",
        lambda r: replace(r, 'step = "upload_model"', 'step = "download__training_dataset"'),
        "images.download.step: steps 'download__training_dataset' and 'download_training_dataset' get the same kfp",
        (),
    ),
    (
        "no-repository-no-project-name",
        lambda r: replace(r, 'repository = "t"\n', ""),
        "repository: missing, and no [project].name to derive it from",
        (),
    ),
]


@pytest.mark.parametrize("edit, fragment, secrets", [pytest.param(e, f, s, id=i) for i, e, f, s in ROWS])
def test_config_trap_is_refused(
    locked_project: Path, edit: Callable[[Path], None], fragment: str, secrets: tuple[str, ...]
) -> None:
    edit(locked_project)
    guard = Guard(locked_project)
    outcome = run_in_process(locked_project, "check")
    line = assert_refused(outcome, CONFIG_CODE, fragment, secrets=secrets)
    assert "pyproject.toml" in line
    guard.check()


@pytest.mark.parametrize(
    "value, fragment",
    [
        ("mycompany", "registry: 'mycompany' (from --registry or BUILDTOOL_REGISTRY) has no dot"),
        ("reg.example.com\nbuildtool: ok", "registry: 'reg.example.com\\nbuildtool: ok/t' is not a valid registry"),
    ],
)
def test_registry_from_the_environment_is_checked_too(
    locked_project: Path, monkeypatch: pytest.MonkeyPatch, value: str, fragment: str
) -> None:
    monkeypatch.setenv("BUILDTOOL_REGISTRY", value)
    guard = Guard(locked_project)
    assert_refused(run_in_process(locked_project, "check"), CONFIG_CODE, fragment)
    guard.check()


def link_to_map(root: Path) -> str:
    (root / "out.yaml").symlink_to(root / "image_map.yaml")
    return "out.yaml"


OUTPUT_ROWS: list[tuple[str, Callable[[Path], str], str]] = [
    ("output-the-map", lambda r: "image_map.yaml", "is the image map"),
    ("output-the-map-by-another-path", lambda r: "./images/../image_map.yaml", "is the image map"),
    ("output-a-link-to-the-map", link_to_map, "is the image map"),
    ("output-a-folder", lambda r: "images", "images: is a folder; name the file to write"),
    ("output-the-config", lambda r: "pyproject.toml", "is the configuration"),
    ("output-under-a-file", lambda r: "image_map.yaml/pipeline.yaml", "image_map.yaml is a file, not a folder"),
]


@pytest.mark.parametrize("target, fragment", [pytest.param(t, f, id=i) for i, t, f in OUTPUT_ROWS])
def test_compile_output_that_would_destroy_a_file_is_refused(
    locked_project: Path, target: Callable[[Path], str], fragment: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(locked_project)
    output = target(locked_project)
    guard = Guard(locked_project, watched=("image_map.yaml", "pipeline.yaml", "pyproject.toml"))
    line = assert_refused(run_in_process(locked_project, "compile", "--output", output), CONFIG_CODE, fragment)
    assert "--output" in line
    guard.check()


def test_compile_output_anywhere_else_is_written(locked_project: Path) -> None:
    """The control row: an output outside the repository is fine when given on the command line."""
    output = locked_project.parent / "elsewhere" / "pipeline.yaml"
    outcome = run_in_process(locked_project, "compile", "--output", str(output))
    assert outcome.code == 0, outcome.err
    assert output.read_text().startswith("apiVersion: argoproj.io/v1alpha1")


def test_compile_output_that_cannot_be_written_keeps_everything(locked_project: Path) -> None:
    """A folder nobody may create files in: the compile error (9), nothing half-written."""
    guard = Guard(locked_project)
    outcome = run_in_process(locked_project, "compile", "--output", "/proc/pipeline.yaml")
    assert_refused(outcome, 9, "/proc/pipeline.yaml: cannot write the workflow")
    guard.check()
