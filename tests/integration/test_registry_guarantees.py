"""verify against the real registry (no engine): a pinned image it does not hold is a problem."""

from __future__ import annotations

from buildtool.gate import verify
from buildtool.push.registry import Registry

from .conftest import BASE_IMAGE, served_digest


def test_verify_asks_the_real_registry_for_every_pinned_image(registry: str) -> None:
    digest = served_digest(BASE_IMAGE)
    assert digest, f"{BASE_IMAGE} is not in the registry; scripts/infra-up.sh pushes it"
    present = f"{BASE_IMAGE}@{digest}"
    absent = f"{BASE_IMAGE}@sha256:" + "0" * 64
    workflow = {
        "kind": "Workflow",
        "spec": {
            "templates": [
                {"name": "training", "container": {"image": present}},
                {"name": "upload-model", "container": {"image": absent}},
            ]
        },
    }
    client = Registry(timeout=10)
    try:
        assert verify.registry_problems(workflow, client) == [f"{absent}: not in the registry"]
        assert (
            verify.registry_problems(
                {"kind": "Workflow", "spec": {"templates": workflow["spec"]["templates"][:1]}}, client
            )
            == []
        )
    finally:
        client.close()
