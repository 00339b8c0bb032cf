import pytest

from buildtool.push import registry


@pytest.mark.parametrize("host, loopback", [
    ("127.0.0.1:5000", True), ("localhost:5000", True), ("localhost", True), ("[::1]:5000", True),
    ("127.1.2.3", True), ("registry.example.com", False), ("ghcr.io", False), ("10.0.0.5:5000", False),
    ("[2001:db8::1]:443", False),
])
def test_only_registries_on_this_machine_get_plain_http(host, loopback):
    assert registry._is_loopback(host) is loopback
