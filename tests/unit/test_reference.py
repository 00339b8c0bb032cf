import pytest

from buildtool import reference

HEX = "0123456789abcdef" * 4


@pytest.mark.parametrize(
    "text",
    [
        f"127.0.0.1:5000/buildtool/training:in-0123@sha256:{HEX}",
        f"registry.example.com/lab/upload_model:v1@sha256:{HEX}",
        f"python@sha256:{HEX}",
    ],
)
def test_pinned_references_are_accepted(text):
    assert reference.pinned_problem(text) is None


@pytest.mark.parametrize(
    "text, why",
    [
        ("127.0.0.1:5000/buildtool/training:in-0123@sha256:abc", "64 lowercase hex"),
        (f"127.0.0.1:5000/buildtool/training:in-0123@sha256:{HEX.upper()}", "64 lowercase hex"),
        (f"127.0.0.1:5000/buildtool/training:in-0123@sha256:{HEX[:63]}", "64 lowercase hex"),
        ("127.0.0.1:5000/buildtool/training:in-0123", "not pinned by digest"),
        (f"127.0.0.1:5000/buildtool/training@sha256:{HEX}@sha256:{HEX}", "more than one '@'"),
        (f"127.0.0.1:5000/buildtool/training:latest@md5:{HEX[:32]}", "64 lowercase hex"),
        (f"Not A Name@sha256:{HEX}", "not a valid image name"),
        (None, "expected a string"),
    ],
)
def test_unpinned_references_are_rejected_with_a_reason(text, why):
    problem = reference.pinned_problem(text)
    assert problem is not None and why in problem


def test_parse_applies_docker_hub_defaults_and_keeps_local_registries():
    hub = reference.parse("python:3.11-slim")
    parts = (hub.domain, hub.path, hub.tag, hub.api_host)
    assert parts == ("docker.io", "library/python", "3.11-slim", "registry-1.docker.io")
    local = reference.parse(f"127.0.0.1:5000/buildtool/python:3.11-bookworm@sha256:{HEX}")
    parts = (local.domain, local.path, local.tag, local.digest)
    assert parts == ("127.0.0.1:5000", "buildtool/python", "3.11-bookworm", f"sha256:{HEX}")
    assert str(local) == f"127.0.0.1:5000/buildtool/python:3.11-bookworm@sha256:{HEX}"
    assert reference.parse("lab/tool:1").path == "lab/tool"


def test_parse_rejects_garbage():
    with pytest.raises(ValueError):
        reference.parse("UPPER/case:tag")


@pytest.mark.parametrize(
    "host, loopback",
    [
        ("127.0.0.1:5000", True),
        ("localhost:5000", True),
        ("localhost", True),
        ("[::1]:5000", True),
        ("127.1.2.3", True),
        ("registry.example.com", False),
        ("ghcr.io", False),
        ("10.0.0.5:5000", False),
        ("[2001:db8::1]:443", False),
    ],
)
def test_only_registries_on_this_machine_get_plain_http(host, loopback):
    assert reference.is_loopback(host) is loopback


@pytest.mark.parametrize(
    "first, domain",
    [
        ("registry.example.com", True),
        ("127.0.0.1:5000", True),
        ("localhost", True),
        ("myhost:443", True),
        ("library", False),
        ("lab", False),
        ("localhost2", False),
    ],
)
def test_a_first_component_is_a_registry_host_only_with_a_dot_a_port_or_localhost(first, domain):
    assert reference.looks_like_domain(first) is domain
