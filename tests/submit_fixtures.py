"""Fixtures of the `submit` tests: a locked, compiled project whose images the fake registry serves, and the fake
KFP v1 API server (tests/fake_kfp.py) to submit it to, through the command line in this process."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from kfp import Client as KfpClient

from buildtool import cli, config, reference
from buildtool.gate import compiler
from buildtool.inputs import context, plan, step_imports
from buildtool.inputs import digest as digest_module
from buildtool.lock import image_map

from .conftest import write_project
from .fake_engine import FakeRegistry
from .fake_kfp import FakeKfp

TOKEN = "kfp-token-3b1f9c0d2e"
COOKIE = "authservice_session=MTcwMDAwMDAwMHxzZWNyZXQ"
PARAMS = [
    "-p",
    "training_task_uid=t1",
    "-p",
    "training_dataset_uid=d1",
    "-p",
    "model_uid=m1",
    "-p",
    "learning_rate=0.01",
    "-p",
    "host=platform.example.com",
    "-p",
    "port=443",
]


def lock_with_registry(project_path: Path, registry: FakeRegistry) -> config.Config:
    """A map for the current tree whose every image the fake registry serves; pipeline.yaml compiled from it."""
    external = f"{registry.host}/lib/python:3.11"
    base_digest = registry.store("lib/python", "3.11")
    loaded = config.load(project_path)
    contexts = {i.name: context.scan(i.context) for i in loaded.images}
    inputs = plan.compute_inputs(loaded, contexts, {external: base_digest}, step_imports.for_config(loaded))
    the_plan = plan.make_plan(loaded, inputs, {external: f"{external}@{base_digest}"}, {}, None)
    images = {}
    for image in the_plan.images:
        ref = reference.parse(image.tagged)
        digest = registry.store(ref.path, ref.tag or "latest", labels={digest_module.LABEL_INPUTS: image.inputs.digest})
        images[image.name] = image_map.LockedImage(
            f"{image.tagged}@{digest}", image.inputs.digest, image.base_label, dict(image.inputs.items)
        )
    lock = image_map.ImageMap(
        steps={i.step: images[i.name].reference for i in the_plan.images if i.step}, images=images
    )
    image_map.write_atomic(loaded.image_map, image_map.render(lock))
    assert compiler.compile_pipeline(loaded, loaded.output) == []
    return loaded


@dataclass
class Submitter:
    root: Path
    kfp: FakeKfp
    registry: FakeRegistry
    capsys: pytest.CaptureFixture[str]

    @property
    def pipeline(self) -> Path:
        return self.root / "pipeline.yaml"

    def __call__(self, *args: str, host: str | None = None) -> tuple[int, str, str]:
        self.capsys.readouterr()
        code = cli.main(
            [
                "--config",
                str(self.root / "pyproject.toml"),
                "submit",
                "--host",
                host or self.kfp.url,
                "--poll",
                "0.05",
                *args,
            ]
        )
        out, err = self.capsys.readouterr()
        assert "Traceback" not in err and "unexpected" not in err, err
        for secret in (TOKEN, COOKIE.split("=", 1)[1], "s3cr3t-value"):
            assert secret not in out + err, "a secret shows in the output"
        return code, out, err


@pytest.fixture(scope="session")
def _template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, FakeRegistry]]:
    registry = FakeRegistry()
    root = tmp_path_factory.mktemp("submit") / "project"
    root.mkdir()
    path = write_project(root)
    path.write_text(
        path.read_text()
        .replace('registry = "127.0.0.1:5000"', f'registry = "{registry.host}"')
        .replace('base_image = "127.0.0.1:5000/lib/python:3.11"', f'base_image = "{registry.host}/lib/python:3.11"')
    )
    lock_with_registry(path, registry)
    yield root, registry
    registry.close()


@pytest.fixture
def submit(
    _template: tuple[Path, FakeRegistry],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Submitter]:
    template, registry = _template
    root = tmp_path / "project"
    shutil.copytree(template, root, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setenv("HOME", str(tmp_path))
    # No kfp context.json of the machine's: kfp reads the path it computed from HOME at import.
    monkeypatch.setattr(KfpClient, "LOCAL_KFP_CONTEXT", str(tmp_path / ".config" / "kfp" / "context.json"))
    for name in ("KF_PIPELINES_ENDPOINT", "KF_PIPELINES_UI_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    # The parameter form's secrets, as `buildtool run` takes them: from the environment, never -p.
    monkeypatch.setenv("PLATFORM_ACCESS_KEY", "ak")
    monkeypatch.setenv("PLATFORM_SECRET_KEY", "s3cr3t-value")
    with FakeKfp() as server:
        yield Submitter(root, server, registry, capsys)
