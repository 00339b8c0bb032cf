"""buildtool's own push: gzip on every core, what the registry already has, the manifest written last.

The engine and registry here are in-memory stand-ins that speak the same calls;
tests/integration pushes through the real engine and registry.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
import threading
from pathlib import Path

import pytest

from buildtool.errors import PushError
from buildtool.push import compress, publish
from buildtool.reference import parse

TARGET = parse("127.0.0.1:5000/p/training:in-0123456789abcdef")
BASE = parse("127.0.0.1:5000/p/base:in-fedcba9876543210@sha256:" + "b" * 64)


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def layer_tar(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


class FakeImage:
    """An image as the engine exports it: layer tars in folders, the config named by its digest."""

    def __init__(self, layers: list[bytes]) -> None:
        self.layers = layers
        self.config = json.dumps({"rootfs": {"type": "layers", "diff_ids": [sha(layer) for layer in layers]}}).encode()
        self.id = sha(self.config)

    def export(self, layout: str = "legacy") -> bytes:
        """`legacy`: the engine's layout up to 24 (`<v1 id>/layer.tar`, `<id>.json`); `oci`: from 25 on
        (`blobs/sha256/<hex>` for layers, stored uncompressed under their diff ID, and for the config)."""
        out = io.BytesIO()
        with tarfile.open(fileobj=out, mode="w") as tar:
            if layout == "oci":
                members = {f"blobs/sha256/{sha(layer)[7:]}": layer for layer in self.layers}
                members[f"blobs/sha256/{self.id[7:]}"] = self.config
                members["index.json"] = b'{"schemaVersion": 2, "manifests": []}'
                members["oci-layout"] = b'{"imageLayoutVersion": "1.0.0"}'
            else:
                members = {f"{hashlib.md5(layer).hexdigest()}/layer.tar": layer for layer in self.layers}
                members[self.id[7:] + ".json"] = self.config
            for name in sorted(members):  # the engine writes its export folder in name order
                info = tarfile.TarInfo(name)
                info.size = len(members[name])
                tar.addfile(info, io.BytesIO(members[name]))
        return out.getvalue()


class FakeEngine:
    def __init__(self, image: FakeImage, layout: str = "legacy") -> None:
        self.image, self.layout = image, layout

    def layers(self, image_id: str) -> list[str]:
        assert image_id == self.image.id
        return json.loads(self.image.config)["rootfs"]["diff_ids"]

    def export(self, image_id: str) -> io.BufferedReader:
        assert image_id == self.image.id
        return io.BufferedReader(io.BytesIO(self.image.export(self.layout)))


class FakeRegistry:
    """Blobs per repository; records every write."""

    def __init__(self, base_manifest: dict | None = None, base_config: bytes = b"") -> None:
        self.blobs: dict[str, dict[str, bytes]] = {}
        self.base_manifest, self.base_config = base_manifest, base_config
        self.mounts: list[tuple[str, str]] = []
        self.uploads: list[str] = []
        self.manifests: dict[str, bytes] = {}

    def platform_manifest(self, ref, platform):
        assert ref == BASE
        return self.base_manifest

    def blob(self, ref, digest):
        assert digest == sha(self.base_config)
        return self.base_config

    def has_blob(self, ref, digest):
        return digest in self.blobs.get(ref.path, {})

    def mount_blob(self, ref, digest, source_path):
        if digest not in self.blobs.get(source_path, {}):
            return False
        self.mounts.append((digest, source_path))
        self.blobs.setdefault(ref.path, {})[digest] = self.blobs[source_path][digest]
        return True

    def upload_blob(self, ref, path: Path, digest):
        data = path.read_bytes()
        assert sha(data) == digest
        self.uploads.append(digest)
        self.blobs.setdefault(ref.path, {})[digest] = data

    def put_manifest(self, ref, body):
        self.manifests[ref.tag] = body
        return sha(body)


def stage(engine, registry, base=None, cancel=None, level=1):
    plan = publish.plan_layers(engine, registry, engine.image.id, TARGET, base, platform="linux/amd64")
    return publish.stage(engine, registry, plan, level=level, cancel=cancel or threading.Event(),
                         progress=lambda _: None)


# -- compression --------------------------------------------------------------------------------------------------


def test_gzip_layer_round_trips_and_names_both_digests(tmp_path):
    data = layer_tar({"a.txt": b"hello " * 100_000, "b.bin": bytes(range(256)) * 5000})
    layer = compress.gzip_layer(io.BytesIO(data), tmp_path, level=6, threads=2)
    blob = layer.path.read_bytes()
    assert gzip.decompress(blob) == data
    assert layer.diff_id == sha(data) and layer.digest == sha(blob) and layer.size == len(blob)


def test_gzip_layer_is_deterministic_whatever_the_thread_count(tmp_path):
    data = layer_tar({"big": b"".join(i.to_bytes(4, "little") for i in range(700_000))})
    digests = {compress.gzip_layer(io.BytesIO(data), tmp_path, level=6, threads=n).digest for n in (1, 2, 2, 4)}
    assert len(digests) == 1


# -- plan -------------------------------------------------------------------------------------------------------


def test_known_layers_come_from_the_base_manifest_and_config():
    manifest = {"layers": [
        {"mediaType": publish.LAYER_GZIP, "digest": "sha256:" + "1" * 64, "size": 10},
        {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": "sha256:" + "2" * 64, "size": 20},
        {"mediaType": "application/vnd.oci.image.layer.v1.tar+zstd", "digest": "sha256:" + "3" * 64, "size": 30},
        {"mediaType": publish.LAYER_GZIP, "digest": "sha256:" + "4" * 64, "size": 40, "urls": ["https://x"]},
    ]}
    config = {"rootfs": {"diff_ids": ["sha256:" + c * 64 for c in "abcd"]}}
    known = publish.known_from(manifest, config, BASE)
    assert set(known) == {"sha256:" + "a" * 64, "sha256:" + "b" * 64}  # zstd and foreign layers are compressed anew
    assert known["sha256:" + "b" * 64].blob == publish.Blob("sha256:" + "2" * 64, 20, publish.LAYER_GZIP)
    assert publish.known_from(manifest, {"rootfs": {"diff_ids": []}}, BASE) == {}


def test_manifest_lists_config_and_layers_in_order():
    config = publish.Blob("sha256:" + "c" * 64, 7, publish.CONFIG_TYPE)
    layers = [publish.Blob("sha256:" + "2" * 64, 2), publish.Blob("sha256:" + "1" * 64, 1)]
    document = json.loads(publish.make_manifest(config, layers))
    assert document["schemaVersion"] == 2
    assert document["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
    assert document["config"] == {"mediaType": publish.CONFIG_TYPE, "size": 7, "digest": "sha256:" + "c" * 64}
    assert [layer["digest"] for layer in document["layers"]] == ["sha256:" + "2" * 64, "sha256:" + "1" * 64]


# -- stage and publish ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["legacy", "oci"])
def test_new_layers_are_compressed_uploaded_and_published_last(layout):
    image = FakeImage([layer_tar({"etc/os": b"debian"}), layer_tar({"app/model.py": b"x = 1\n" * 1000})])
    registry = FakeRegistry()
    staged = stage(FakeEngine(image, layout), registry)
    assert registry.manifests == {}  # staging writes blobs only: no image exists yet
    assert staged.compressed == 2 and staged.reused == 0
    assert publish.publish(registry, staged) == staged.digest == sha(staged.manifest)
    manifest = json.loads(registry.manifests[TARGET.tag])
    assert manifest["config"]["digest"] == image.id
    stored = registry.blobs[TARGET.path]
    assert stored[image.id] == image.config
    assert [gzip.decompress(stored[layer["digest"]]) for layer in manifest["layers"]] == image.layers


def registry_holding_base(base_layer: bytes) -> tuple[FakeRegistry, bytes]:
    """A registry holding BASE: one gzip layer, and its manifest and config; returns it and the layer's blob."""
    base_blob = gzip.compress(base_layer)
    base_config = json.dumps({"rootfs": {"diff_ids": [sha(base_layer)]}}).encode()
    base_manifest = {"config": {"digest": sha(base_config)},
                     "layers": [{"mediaType": publish.LAYER_GZIP, "digest": sha(base_blob), "size": len(base_blob)}]}
    registry = FakeRegistry(base_manifest, base_config)
    registry.blobs[BASE.path] = {sha(base_blob): base_blob}
    return registry, base_blob


@pytest.mark.parametrize("layout", ["legacy", "oci"])
def test_layers_of_the_base_are_mounted_not_compressed(monkeypatch, layout):
    compressed = []
    gzip_layer = compress.gzip_layer
    monkeypatch.setattr(compress, "gzip_layer", lambda source, *a, **k: compressed.append(gzip_layer(source, *a, **k))
                        or compressed[-1])
    base_layer, own_layer = layer_tar({"usr/bin/python3": b"elf" * 1000}), layer_tar({"app": b"new"})
    registry, base_blob = registry_holding_base(base_layer)
    image = FakeImage([base_layer, own_layer])
    staged = stage(FakeEngine(image, layout), registry, base=BASE)
    assert staged.reused == 1 and staged.compressed == 1
    assert [layer.diff_id for layer in compressed] == [sha(own_layer)]  # the base's layer was only hashed
    assert registry.mounts == [(sha(base_blob), BASE.path)]
    assert sha(base_blob) not in registry.uploads
    layers = json.loads(staged.manifest)["layers"]
    assert layers[0] == {"mediaType": publish.LAYER_GZIP, "size": len(base_blob), "digest": sha(base_blob)}


def test_an_image_adding_no_layer_to_its_base_misses_nothing():
    base_layer = layer_tar({"usr/bin/python3": b"elf"})
    registry, base_blob = registry_holding_base(base_layer)
    image = FakeImage([base_layer])
    plan = publish.plan_layers(FakeEngine(image), registry, image.id, TARGET, BASE, platform="linux/amd64")
    assert plan.missing == frozenset()
    assert plan.present == {sha(base_layer): publish.Blob(sha(base_blob), len(base_blob))}
    assert publish.plan_layers(FakeEngine(image), registry, image.id, TARGET, None, platform="linux/amd64").missing \
        == {sha(base_layer)}  # without a base to ask, every layer is compressed


def test_a_layer_missing_from_the_export_fails_the_push():
    image = FakeImage([layer_tar({"a": b"1"}), layer_tar({"b": b"2"})])
    engine = FakeEngine(image)
    exported = FakeImage([image.layers[0]])
    exported.config, exported.id = image.config, image.id  # the config names a layer the export lacks
    engine.export = lambda _: io.BufferedReader(io.BytesIO(exported.export()))
    with pytest.raises(PushError, match=r"export of sha256:\w+ lacks layer\(s\) sha256:"):
        stage(engine, FakeRegistry())


def test_an_oci_blob_whose_content_is_not_its_name_fails_the_push():
    image = FakeImage([layer_tar({"a": b"1"})])
    engine = FakeEngine(image, "oci")
    exported = image.export("oci")
    tampered = exported.replace(b"\x00" * 10 + b"1", b"\x00" * 10 + b"2", 1)  # the layer's content, not its name
    assert tampered != exported
    engine.export = lambda _: io.BufferedReader(io.BytesIO(tampered))
    with pytest.raises(PushError, match=r"holds blobs/sha256/\w+, whose content hashes to sha256:"):
        stage(engine, FakeRegistry())


def test_a_config_that_does_not_hash_to_the_image_id_fails_the_push():
    image = FakeImage([layer_tar({"a": b"1"})])
    engine = FakeEngine(image)
    tampered = image.export().replace(b'"layers"', b'"LAYERS"')
    engine.export = lambda _: io.BufferedReader(io.BytesIO(tampered))
    with pytest.raises(PushError, match="exported config of sha256:"):
        stage(engine, FakeRegistry())


def test_a_cancelled_stage_stops_before_compressing():
    image = FakeImage([layer_tar({"a": b"1" * 100_000})])
    registry, cancel = FakeRegistry(), threading.Event()
    cancel.set()
    with pytest.raises(publish.Cancelled):
        stage(FakeEngine(image), registry, cancel=cancel)
    assert registry.uploads == [] and registry.manifests == {}


def test_a_registry_storing_another_manifest_digest_fails_the_push():
    image = FakeImage([layer_tar({"a": b"1"})])
    registry = FakeRegistry()
    staged = stage(FakeEngine(image), registry)
    registry.put_manifest = lambda ref, body: "sha256:" + "0" * 64
    with pytest.raises(PushError, match="stored the manifest as sha256:0000"):
        publish.publish(registry, staged)


def test_a_failed_upload_fails_the_stage_and_cancels_what_is_queued():
    image = FakeImage([layer_tar({"a": b"1" * 1000}), layer_tar({"b": b"2" * 1000}), layer_tar({"c": b"3" * 1000})])
    registry, cancel = FakeRegistry(), threading.Event()

    def refuse(ref, path, digest):
        raise PushError(f"push of {ref} failed: registry answered 507 for blob {digest}")

    registry.upload_blob = refuse
    with pytest.raises(PushError, match="registry answered 507"):
        stage(FakeEngine(image), registry, cancel=cancel)
    assert cancel.is_set() and registry.manifests == {}
