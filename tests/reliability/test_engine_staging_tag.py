"""Concurrent builds of one image must not leave a local `…/staging:unchecked-…` tag in the engine.

The engine's push needs a local name, so the engine pusher tags the built image under its staging reference
and untags it once pushed. When another build of the same inputs moves the content tag to its own image
meanwhile, the staging tag is the last reference of the first image, and that image's check container still
uses it: the engine then refuses a plain untag ("must force"), and the tag stayed. Each row is one state the
image can be in at the untag, on the real engine; whatever the row, the staging tag is gone, the content tag
still names the other build's image, and no other reference changed.
"""

from __future__ import annotations

import io
import os
import uuid
from collections.abc import Iterator

import docker
import pytest

from buildtool.engine import Engine

pytestmark = pytest.mark.integration

BASE_IMAGE = os.environ.get("BUILDTOOL_BASE_IMAGE", "127.0.0.1:5000/buildtool/python:3.11-bookworm")
REPOSITORY = "127.0.0.1:5000/buildtool-test/concurrent"


@pytest.fixture(scope="module")
def client() -> Iterator[docker.DockerClient]:
    found = docker.from_env(version="auto")
    try:
        found.ping()
    except docker.errors.DockerException as exc:
        pytest.fail(f"no Docker engine ({exc}); start one with scripts/infra-up.sh", pytrace=False)
    yield found
    found.close()


def _image(client: docker.DockerClient, tag: str) -> str:
    """A tiny image of its own (a unique label on the base), tagged `tag`; its id."""
    dockerfile = f"FROM {BASE_IMAGE}\nLABEL buildtool.test={uuid.uuid4().hex}\n".encode()
    image, _ = client.images.build(fileobj=io.BytesIO(dockerfile), tag=tag, rm=True)
    return str(image.id)


# (row id, what holds the first build's image when its staging tag is removed)
STATES = [
    ("content-tag-moved-no-container", None),
    ("content-tag-moved-created-container", "created"),
    ("content-tag-moved-running-container", "running"),
    ("content-tag-moved-stopped-container", "stopped"),
    ("another-tag-still-holds-it", "tagged"),
]


@pytest.mark.parametrize("holder", [state[1] for state in STATES], ids=[state[0] for state in STATES])
def test_the_staging_tag_goes_whatever_holds_the_image(client, holder):
    run = uuid.uuid4().hex[:8]
    content = f"{REPOSITORY}:in-{run}"
    staging = f"{REPOSITORY}/staging:unchecked-{run}"
    kept = f"{REPOSITORY}:kept-{run}"
    first = _image(client, content)  # the first build: content tag, then its staging tag for the push
    repository, tag = staging.rsplit(":", 1)
    client.api.tag(first, repository, tag)
    container = None
    if holder == "tagged":
        client.api.tag(first, *kept.rsplit(":", 1))
    elif holder is not None:  # the first build's check container
        container = client.containers.create(first, ["sleep", "30"])
        if holder in ("running", "stopped"):
            container.start()
        if holder == "stopped":
            container.kill()
            container.wait()
    second = _image(client, content)  # another build of the same inputs moves the content tag
    engine = Engine()
    try:
        engine.untag(staging)
        tags = {t for image in client.images.list(name=REPOSITORY) for t in image.tags}
        staged = {t for image in client.images.list(name=f"{REPOSITORY}/staging") for t in image.tags}
        content_id = client.images.get(content).id
        kept_id = client.images.get(kept).id if holder == "tagged" else None
        container_alive = container is not None and holder == "running" and client.containers.get(container.id)
    finally:
        engine.close()
        if container is not None:
            container.remove(force=True)
        for ref in (staging, kept, content):
            try:
                client.images.remove(ref, noprune=False)
            except docker.errors.NotFound:
                pass
        for image_id in (first, second):
            try:
                client.images.remove(image_id)
            except docker.errors.NotFound:
                pass

    assert staging not in staged and staging not in tags
    assert content_id == second
    assert holder != "tagged" or kept_id == first  # another tag of the image is never touched
    assert holder != "running" or container_alive  # a running container keeps running
