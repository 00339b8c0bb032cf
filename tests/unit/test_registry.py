import os

from buildtool.push import registry
from buildtool.reference import parse


def test_a_registry_with_its_own_ca_in_the_engines_certs_d_is_spoken_to_over_tls(tmp_path):
    """The engine's certs.d/<host:port>/ca.crt means TLS with that CA, on this machine too; nothing else moves."""
    (tmp_path / "127.0.0.1:5443").mkdir()
    (tmp_path / "127.0.0.1:5443" / "ca.crt").write_text("-----BEGIN CERTIFICATE-----\n")
    (tmp_path / "127.0.0.1:5444").mkdir()  # a folder without ca.crt (a client certificate alone, say)
    assert registry.engine_ca("127.0.0.1:5443", tmp_path) == tmp_path / "127.0.0.1:5443" / "ca.crt"
    assert registry.uses_tls("127.0.0.1:5443", tmp_path)
    assert not registry.uses_tls("127.0.0.1:5444", tmp_path)
    assert not registry.uses_tls("127.0.0.1:5000", tmp_path)
    assert registry.uses_tls("registry.example.com", tmp_path)
    for hostile in ("..", ".", "", "a/../127.0.0.1:5443"):
        assert registry.engine_ca(hostile, tmp_path) is None
    client = registry.Registry(certs=tmp_path)
    try:
        assert client._base_url(parse("127.0.0.1:5443/lab/x:1")).startswith("https://127.0.0.1:5443/")
        assert client._base_url(parse("127.0.0.1:5000/lab/x:1")).startswith("http://127.0.0.1:5000/")
        bundle = client._verify(parse("127.0.0.1:5443/lab/x:1"))
        assert isinstance(bundle, str) and open(bundle).read().endswith("-----BEGIN CERTIFICATE-----\n")
        assert client._verify(parse("127.0.0.1:5000/lab/x:1")) is True
    finally:
        client.close()
    assert not os.path.exists(bundle)  # the bundle goes with the client
