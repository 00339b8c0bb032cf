"""A new project follows only README.md's "Use buildtool in your own project" section, to a verified pipeline.

The files and commands are read from the section itself, so the section cannot drift from what works:
its code blocks headed `# <path>` are written into a fresh git repository, and each `buildtool` line of
its flow is run, on the real engine and registry with the real kfp compiler.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import docker
import pytest
import yaml

from buildtool import cli
from buildtool.gate import verify

from .conftest import BASE_IMAGE, served_digest

REPO = Path(__file__).resolve().parents[2]
SECTION = "## Use buildtool in your own project"


def section() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    start = text.index(SECTION)
    end = text.index("\n## ", start + len(SECTION))
    return text[start:end]


def blocks(text: str) -> list[tuple[str, str]]:
    """(language, body) of every fenced block."""
    return re.findall(r"^```(\w*)\n(.*?)^```", text, flags=re.M | re.S)


def test_the_readme_section_alone_reaches_a_verified_pipeline(
    tmp_path, registry, engine_client: docker.DockerClient, monkeypatch, capsys
):
    project = tmp_path / "mypipe"
    project.mkdir()
    if shutil.which("git"):
        subprocess.run(["git", "init", "-q", str(project)], check=True)
    files = {}
    for language, body in blocks(section()):
        first, _, rest = body.partition("\n")
        if language in ("python", "toml") and (header := re.fullmatch(r"# (\S+\.(?:py|toml))", first)):
            files[header[1]] = rest
    assert set(files) == {"mypipe/__init__.py", "mypipe/steps.py", "mypipe/pipeline.py", "pyproject.toml"}
    repository = f"own-{uuid.uuid4().hex[:10]}"  # [project].name: the repository, unique to this run
    files["pyproject.toml"] = files["pyproject.toml"].replace('name = "mypipe"', f'name = "{repository}"')
    for path, text in files.items():
        (project / path).parent.mkdir(parents=True, exist_ok=True)
        (project / path).write_text(text)
    flow = [body for language, body in blocks(section()) if language == "sh" and "buildtool init" in body]
    commands = [shlex.split(line.partition("#")[0]) for line in flow[0].splitlines() if line.startswith("buildtool ")]
    assert [c[1] for c in commands] == ["init", "build", "compile", "check", "verify", "run"]
    # This machine has no public registry: its base and registry, as a user would export them.
    monkeypatch.setenv("BUILDTOOL_BASE_IMAGE", BASE_IMAGE)
    monkeypatch.setenv("BUILDTOOL_REGISTRY", registry)
    config = str(project / "pyproject.toml")
    monkeypatch.chdir(project)  # the section's commands run from the project folder (run's --workdir is relative)
    try:
        for command in commands:
            assert cli.main(["--config", config, *command[1:]]) == 0, (command, capsys.readouterr().err)
        out = capsys.readouterr().out
        # The run the section shows: each step's output where it says, as the step functions compute it.
        workdir = project / commands[-1][commands[-1].index("--workdir") + 1]
        [n] = [int(p.partition("=")[2]) for p in commands[-1] if p.startswith("n=")]
        sys.path.insert(0, str(project))
        try:
            from mypipe.steps import prepare, train
        finally:
            sys.path.remove(str(project))
        outputs = {"prepare": str(prepare(n)), "train": str(train(prepare(n)))}
        for step, value in outputs.items():
            assert (workdir / step / f"{step}-Output" / "data").read_text() == value
            # ...and what the section tells the reader to find there.
            relative = f"{workdir.relative_to(project)}/{step}/{step}-Output/data"
            assert f"`{relative}` holds `{value}`" in " ".join(section().split())
        assert "the run succeeded (2 node(s))" in out
        assert f"repository {repository} (from [project].name" in out
        assert "is what compile makes from them" in out and "exists in the registry" in out
        workflow = yaml.safe_load((project / "pipeline.yaml").read_text())
        lock = yaml.safe_load((project / "image_map.yaml").read_text())
        assert verify.template_steps(workflow, lock["steps"]) == {"prepare": "prepare", "train": "train"}
        for step, image in lock["steps"].items():
            assert image.startswith(f"{registry}/{repository}/{step}:in-") and "@sha256:" in image
        # The section's promise: a step edited later makes the old pipeline.yaml fail check, until compiled.
        steps = project / "mypipe" / "steps.py"
        steps.write_text(steps.read_text().replace("return n * 2", "return n * 3"))
        assert cli.main(["--config", config, "check"]) == 13
        assert cli.main(["--config", config, "compile"]) == 0 and cli.main(["--config", config, "check"]) == 0
    finally:
        for image in engine_client.images.list():
            for tag in image.tags:
                if f"/{repository}/" in tag:
                    engine_client.images.remove(tag, force=True)


@pytest.fixture(autouse=True)
def _project_modules_unloaded():
    """Both projects' packages are called mypipe: no test sees another's modules."""
    import sys

    yield
    for name in [n for n in sys.modules if n.split(".")[0] == "mypipe"]:
        del sys.modules[name]


def test_an_ordinary_pipeline_with_a_third_party_image_builds_compiles_and_verifies(
    tmp_path, registry, engine_client: docker.DockerClient, monkeypatch
):
    """Reused, conditional, looped and renamed steps, and a component.yaml whose image (here the base, pushed
    by another project) is pinned by digest and listed in external_images: verified against the registry."""
    from ..unit.test_any_pipeline import ordinary

    digest = served_digest(BASE_IMAGE)
    assert digest, f"{BASE_IMAGE} is not in the registry"
    third_party = BASE_IMAGE.rpartition(":")[0]
    project = ordinary(tmp_path, report=f"{third_party}@{digest}", external=third_party)
    repository = f"ord-{uuid.uuid4().hex[:10]}"
    project.write_text(project.read_text().replace('name = "Ordinary Pipeline"', f'name = "{repository}"'))
    monkeypatch.setenv("BUILDTOOL_BASE_IMAGE", BASE_IMAGE)
    monkeypatch.setenv("BUILDTOOL_REGISTRY", registry)
    try:
        for command in (["build", "--push"], ["compile"], ["verify"], ["check"]):
            assert cli.main(["--config", str(project), *command]) == 0, command
        templates = {t["name"] for t in yaml.safe_load((tmp_path / "pipeline.yaml").read_text())["spec"]["templates"]}
        assert {"prepare", "prepare-2", "train", "train-2", "report"} <= templates
    finally:
        for image in engine_client.images.list():
            for tag in image.tags:
                if f"/{repository}/" in tag:
                    engine_client.images.remove(tag, force=True)
