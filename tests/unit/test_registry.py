import json

import pytest

from buildtool.errors import RegistryError
from buildtool.push import registry
from buildtool.reference import parse

from ..fake_engine import FakeRegistry, sha256


@pytest.mark.parametrize("host, loopback", [
    ("127.0.0.1:5000", True), ("localhost:5000", True), ("localhost", True), ("[::1]:5000", True),
    ("127.1.2.3", True), ("registry.example.com", False), ("ghcr.io", False), ("10.0.0.5:5000", False),
    ("[2001:db8::1]:443", False),
])
def test_only_registries_on_this_machine_get_plain_http(host, loopback):
    assert registry._is_loopback(host) is loopback


# What a push counts as held: the layers read back from the registry, and a config that lies is refused.


@pytest.fixture
def fake_registry():
    served = FakeRegistry()
    yield served
    served.close()


def test_layers_pair_each_diff_id_with_its_compressed_size(fake_registry):
    digest = fake_registry.store("t/training", "in-1", layers=(1000, 2000, 30))
    client = registry.Registry()
    try:
        layers = client.layers(parse(f"{fake_registry.host}/t/training:in-1@{digest}"))
    finally:
        client.close()
    assert list(layers.values()) == [1000, 2000, 30]
    assert list(layers) == [sha256(f"diff t/training:in-1:{n}".encode()) for n in range(3)]


@pytest.mark.parametrize("config, expected", [
    (b'{"rootfs": {"diff_ids": ["sha256:1"]}}', "does not hash to its digest"),  # swapped bytes
    (None, "holds no rootfs.diff_ids"),
    (None, "the config lists 1 layers, the manifest 2"),
])
def test_a_config_that_does_not_add_up_is_refused(fake_registry, config, expected):
    digest = fake_registry.store("t/training", "in-1", layers=(1000, 2000))
    config_digest = next(iter(fake_registry.configs))
    if expected == "holds no rootfs.diff_ids":
        config = b'{"rootfs": {}}'
    elif expected.startswith("the config lists"):
        config = json.dumps({"rootfs": {"diff_ids": ["sha256:" + "1" * 64]}}).encode()
    if config is not None and expected != "does not hash to its digest":
        # A consistent blob under its own digest, named by a manifest stored for it.
        fake_registry.configs.pop(config_digest)
        config_digest = sha256(config)
        fake_registry.configs[config_digest] = config
        fake_registry.rewrite_config("t/training", "in-1", config_digest, len(config))
        digest = fake_registry.served("t/training", "in-1")
    else:
        fake_registry.configs[config_digest] = config
    client = registry.Registry()
    try:
        with pytest.raises(RegistryError, match=expected):
            client.layers(parse(f"{fake_registry.host}/t/training:in-1@{digest}"))
    finally:
        client.close()
