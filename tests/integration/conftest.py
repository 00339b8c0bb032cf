"""Integration fixtures: the real engine and registry that scripts/infra-up.sh starts."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
import requests

from buildtool.push.registry import MANIFEST_TYPES

from ..conftest import write_project

REGISTRY = os.environ.get("BUILDTOOL_TEST_REGISTRY", "127.0.0.1:5000")
BASE_IMAGE = os.environ.get("BUILDTOOL_BASE_IMAGE", f"{REGISTRY}/buildtool/python:3.11-bookworm")


def pytest_collection_modifyitems(items):
    for item in items:
        if "/integration/" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def engine_client() -> Iterator[docker.DockerClient]:
    try:
        client = docker.from_env(version="auto")
        client.ping()
    except docker.errors.DockerException as exc:
        pytest.fail(f"no Docker engine ({exc}); start one with scripts/infra-up.sh", pytrace=False)
    yield client
    client.close()


@pytest.fixture(scope="session")
def registry() -> str:
    try:
        requests.get(f"http://{REGISTRY}/v2/", timeout=5).raise_for_status()
    except requests.RequestException as exc:
        pytest.fail(f"no registry at {REGISTRY} ({exc}); start one with scripts/infra-up.sh", pytrace=False)
    return REGISTRY


def served_digest(ref_without_digest: str) -> str | None:
    """What the registry's HTTP API serves for `host/repo:tag` (Docker-Content-Digest)."""
    host, _, rest = ref_without_digest.partition("/")
    repo, _, tag = rest.rpartition(":")
    response = requests.head(
        f"http://{host}/v2/{repo}/manifests/{tag}", headers={"Accept": ", ".join(MANIFEST_TYPES)}, timeout=10
    )
    return response.headers.get("Docker-Content-Digest") if response.status_code == 200 else None


SMALL_STEPS = """
def download_training_dataset(output):
    import json, os


def training(input, output):
    import json


def upload_model(input):
    import os.path
"""


@pytest.fixture
def builder() -> str:
    """The builder small_project is configured with; test modules that run with both override this fixture."""
    return "classic"


@pytest.fixture
def small_project(tmp_path: Path, registry: str, engine_client: docker.DockerClient, builder: str) -> Iterator[Path]:
    """A four-image project of tiny images on the bootstrapped base, under a repository prefix of its own."""
    prefix = f"it-{uuid.uuid4().hex[:10]}"
    path = write_project(tmp_path)
    text = path.read_text().replace('repository = "t"', f'repository = "{prefix}"\nbuilder = "{builder}"')
    text = text.replace('base_image = "127.0.0.1:5000/lib/python:3.11"', f'base_image = "{BASE_IMAGE}"')
    text = text.replace('registry = "127.0.0.1:5000"', f'registry = "{registry}"')
    text = text.replace(
        'pipeline = "pipeline.training_pipeline:make_pipeline"',
        'pipeline = "pipeline.training_pipeline:make_pipeline"\nsteps_module = "small_steps"',
    )
    path.write_text(text)
    # Step functions whose imports the tiny images do have (the import check runs them).
    (tmp_path / "small_steps.py").write_text(SMALL_STEPS)
    for name in ("base", "download", "training", "upload"):
        (tmp_path / "images" / name / "Dockerfile").write_text(
            f"ARG BASE_IMAGE\nFROM ${{BASE_IMAGE}}\nCOPY . /opt/{name}/\nRUN python3 -c \"print('{name} ok')\"\n"
        )
    yield path
    for image in engine_client.images.list():
        for tag in image.tags:
            if f"/{prefix}/" in tag:
                with contextlib.suppress(docker.errors.ImageNotFound):  # gone with an earlier tag of the same image
                    engine_client.images.remove(tag, force=True)
