import json
import os

import pytest

from buildtool.errors import RegistryError
from buildtool.push import registry, registry_tls
from buildtool.reference import parse

from ..fake_engine import FakeRegistry, sha256


def test_a_registry_with_its_own_ca_in_the_engines_certs_d_is_spoken_to_over_tls(tmp_path):
    """The engine's certs.d/<host:port>/ca.crt means TLS with that CA, on this machine too; nothing else moves."""
    (tmp_path / "127.0.0.1:5443").mkdir()
    (tmp_path / "127.0.0.1:5443" / "ca.crt").write_text("-----BEGIN CERTIFICATE-----\n")
    (tmp_path / "127.0.0.1:5444").mkdir()  # a folder without ca.crt (a client certificate alone, say)
    assert registry_tls.engine_ca("127.0.0.1:5443", tmp_path) == tmp_path / "127.0.0.1:5443" / "ca.crt"
    assert registry_tls.uses_tls("127.0.0.1:5443", tmp_path)
    assert not registry_tls.uses_tls("127.0.0.1:5444", tmp_path)
    assert not registry_tls.uses_tls("127.0.0.1:5000", tmp_path)
    assert registry_tls.uses_tls("registry.example.com", tmp_path)
    for hostile in ("..", ".", "", "a/../127.0.0.1:5443"):
        assert registry_tls.engine_ca(hostile, tmp_path) is None
    client = registry.Registry(certs=tmp_path)
    try:
        assert client.http.base_url(parse("127.0.0.1:5443/lab/x:1")).startswith("https://127.0.0.1:5443/")
        assert client.http.base_url(parse("127.0.0.1:5000/lab/x:1")).startswith("http://127.0.0.1:5000/")
        bundle = client.http.verify(parse("127.0.0.1:5443/lab/x:1"))
        assert isinstance(bundle, str) and open(bundle).read().endswith("-----BEGIN CERTIFICATE-----\n")
        assert client.http.verify(parse("127.0.0.1:5000/lab/x:1")) is True
    finally:
        client.close()
    assert not os.path.exists(bundle)  # the bundle goes with the client


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


@pytest.mark.parametrize(
    "config, expected",
    [
        (b'{"rootfs": {"diff_ids": ["sha256:1"]}}', "does not hash to its digest"),  # swapped bytes
        (None, "holds no rootfs.diff_ids"),
        (None, "the config lists 1 layers, the manifest 2"),
    ],
)
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
