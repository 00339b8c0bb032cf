"""BuildKit through the docker CLI: the installer cache is a cache mount, kept between builds, never in a layer.

(A cache folder of its own: the test never writes into the cache the real images install from.)
"""

from __future__ import annotations

import uuid

import pytest

from buildtool import builders, buildkit_probe
from buildtool.engine import Engine
from buildtool.inputs import context
from buildtool.interrupt import Token

from .conftest import BASE_IMAGE

# Stands in for an installer: it lists the cache it finds, then adds to it, unless told --no-cache.
DOCKERFILE = """\
ARG BASE_IMAGE
FROM ${{BASE_IMAGE}}
# buildtool: cache-mount /root/.cache/buildtool-test --no-cache
RUN set -eu; mkdir -p /root/.cache/buildtool-test; ls /root/.cache/buildtool-test > /seen; \\
    echo flags: --no-cache > /flags; \\
    echo {n} > /root/.cache/buildtool-test/run-{n}
"""


@pytest.fixture
def cli():
    found, reasons = buildkit_probe.find_cli(Engine())
    if found is None:
        pytest.fail(f"no docker CLI with BuildKit here: {reasons}", pytrace=False)
    return found


def test_the_installer_cache_is_a_cache_mount(tmp_path, cli, engine_client, registry):
    engine = Engine()
    tag = f"127.0.0.1:5000/it-buildkit-{uuid.uuid4().hex[:8]}/cache"
    (tmp_path / ".dockerignore").write_text("*.secret\n")
    builder = builders.BuildKitBuilder(cli)
    seen = []
    try:
        for n in (1, 2):
            (tmp_path / "Dockerfile").write_text(DOCKERFILE.format(n=n))
            image = builder.build(
                context.scan(tmp_path),
                f"{tag}:{n}",
                {"BASE_IMAGE": BASE_IMAGE},
                platform="linux/amd64",
                labels={"buildtool.test": "cache"},
                cache_from=[],
                progress=lambda _: None,
                token=Token(),
            )
            result = engine.call(
                image,
                [
                    "sh",
                    "-c",
                    "cat /seen; echo ---; cat /flags; echo ---; ls /root/.cache/buildtool-test 2>/dev/null | wc -l",
                ],
            )
            assert result.exit_code == 0, result.output
            listing, flags, in_layer = result.output.split("---\n")
            seen.append(listing.split())
            assert flags.strip() == "flags:", "the --no-cache flag is dropped under BuildKit"
            assert in_layer.strip() == "0", "the cache stays out of the image"
        assert "run-1" in seen[1], f"the second build found the first one's cache: {seen}"
    finally:
        for n in (1, 2):
            engine.untag(f"{tag}:{n}")
        engine.close()
