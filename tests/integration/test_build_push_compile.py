"""build --push -> image map -> compile, on the real engine, registry and kfp compiler."""

from __future__ import annotations

import contextlib
import http.server
import os
import re
import threading
import urllib.request

import docker
import pytest
import yaml

from buildtool import cli, config
from buildtool.engine import Engine
from buildtool.gate import verify
from buildtool.lock import image_map
from buildtool.push.registry import Registry
from buildtool.reference import parse

from .conftest import served_digest

STEPS = {"download_training_dataset", "training", "upload_model"}


@pytest.fixture(params=["classic", "buildkit"])
def builder(request):
    """Every test here runs with both builders: the same plan, check, staged push and map."""
    return request.param


def run(project, *args):
    return cli.main(["--config", str(project), *args])


def test_build_push_pins_map_and_compiles(small_project, capsys):
    assert run(small_project, "build", "--push") == 0
    out = capsys.readouterr()
    assert out.out.count("build ") >= 4 and "image_map.yaml updated" in out.out
    assert "step 2/" in out.err and "pushed" in out.err  # progress: Dockerfile steps and pushes
    mapping = image_map.load(small_project.parent / "image_map.yaml")
    assert set(mapping.steps) == STEPS
    for step, ref in mapping.steps.items():
        name, digest = ref.split("@")
        assert served_digest(name) == digest, step
    assert run(small_project, "compile") == 0
    workflow = yaml.safe_load((small_project.parent / "pipeline.yaml").read_text())
    images = list(verify.images_in(workflow))
    assert len(images) == 6  # a container image and an annotation copy per step
    for template, _, image in images:
        assert image == mapping.steps[template.replace("-", "_")]
    assert run(small_project, "verify") == 0
    assert run(small_project, "check") == 0


def test_no_op_builds_nothing_and_leaves_map_untouched(small_project, engine_client, capsys):
    assert run(small_project, "build", "--push") == 0
    map_path = small_project.parent / "image_map.yaml"
    before = (map_path.read_bytes(), os.stat(map_path).st_mtime_ns)
    # The CI case: an engine with no cached layers of these images.
    prefix = config.load(small_project).repository
    for image in engine_client.images.list():
        for tag in image.tags:
            if f"/{prefix}/" in tag:
                engine_client.images.remove(tag, force=True)
    capsys.readouterr()
    assert run(small_project, "build", "--push") == 0
    lines = capsys.readouterr().out.splitlines()
    reused = [line.split()[1] for line in lines if line.startswith("reuse ")]
    assert reused == ["base", "download", "training", "upload"]
    assert not [line for line in lines if line.startswith("build ")]
    assert any(line.endswith("image_map.yaml unchanged") for line in lines)
    assert (map_path.read_bytes(), os.stat(map_path).st_mtime_ns) == before


def test_one_change_rebuilds_only_that_image(small_project, capsys):
    assert run(small_project, "build", "--push") == 0
    old = image_map.load(small_project.parent / "image_map.yaml")
    (small_project.parent / "images" / "download" / "extra.txt").write_text("new file\n")
    capsys.readouterr()
    assert run(small_project, "build", "--dry-run") == 0
    plan_text = capsys.readouterr().out
    assert "because file extra.txt added" in plan_text
    assert run(small_project, "build", "--push") == 0
    out = capsys.readouterr().out
    new = image_map.load(small_project.parent / "image_map.yaml")
    assert [line.split()[1] for line in out.splitlines() if line.startswith("build ")] == ["download"]
    assert new.steps["download_training_dataset"] != old.steps["download_training_dataset"]
    assert new.steps["training"] == old.steps["training"] and new.steps["upload_model"] == old.steps["upload_model"]


def test_dependents_build_on_the_pinned_base(small_project, registry):
    assert run(small_project, "build", "--push") == 0
    mapping = image_map.load(small_project.parent / "image_map.yaml")

    client = Registry()
    base_layers = [layer["digest"] for layer in client.manifest(parse(mapping.images["base"].reference))["layers"]]
    for name in ("download", "training", "upload"):
        layers = [layer["digest"] for layer in client.manifest(parse(mapping.images[name].reference))["layers"]]
        assert layers[: len(base_layers)] == base_layers, name
        assert mapping.images[name].base == "image:base"
    client.close()


def test_failed_build_names_the_step_and_keeps_the_map(small_project, capsys):
    assert run(small_project, "build", "--push") == 0
    map_path = small_project.parent / "image_map.yaml"
    before = map_path.read_bytes()
    (small_project.parent / "images" / "training" / "Dockerfile").write_text(
        "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nRUN echo about to fail && exit 3\n"
    )
    capsys.readouterr()
    assert run(small_project, "build", "--push") == 6
    err = capsys.readouterr().err
    # Each builder numbers its own steps (the classic one counts ARG and its LABELs): the failing one is named.
    assert re.search(
        r"build of \S+/training:in-[0-9a-f]{16} failed at step \d+/\d+ "
        r"\(RUN echo about to fail && exit 3\)",
        err,
    ), err
    assert "about to fail" in err.split("last lines of the build log")[1]
    assert "Traceback" not in err
    assert map_path.read_bytes() == before


class _RefusingProxy(http.server.ThreadingHTTPServer):
    """Forwards reads to the real registry; refuses every upload, as a full or read-only registry would."""


def _proxy_handler(upstream: str):
    class Handler(http.server.BaseHTTPRequestHandler):
        def _forward(self):
            if self.command in ("POST", "PUT", "PATCH"):
                self.send_response(403)
                body = b'{"errors":[{"code":"DENIED","message":"uploads refused by test proxy"}]}'
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            request = urllib.request.Request(
                f"http://{upstream}{self.path}",
                method=self.command,
                headers={k: v for k, v in self.headers.items() if k.lower() != "host"},
            )
            try:
                response = urllib.request.urlopen(request, timeout=30)
                status, headers, body = response.status, response.headers, response.read()
            except urllib.error.HTTPError as exc:
                status, headers, body = exc.code, exc.headers, exc.read()
            self.send_response(status)
            for key, value in headers.items():
                if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = _forward

        def log_message(self, *args):
            pass

    return Handler


def test_refused_push_fails_the_command_and_keeps_the_map(small_project, registry, capsys):
    proxy = _RefusingProxy(("127.0.0.1", 0), _proxy_handler(registry))
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    try:
        map_path = small_project.parent / "image_map.yaml"
        map_path.write_text("# the map before the failed push\nsteps: {}\n")
        before = map_path.read_bytes()
        address = f"127.0.0.1:{proxy.server_address[1]}"
        code = run(small_project, "build", "--push", "--registry", address)
        err = capsys.readouterr().err
        assert code == 7, err
        assert "push of" in err and "failed" in err and "Traceback" not in err
        assert map_path.read_bytes() == before
    finally:
        proxy.shutdown()


def test_a_step_importing_what_its_image_lacks_fails_before_push(small_project, capsys):
    map_path = small_project.parent / "image_map.yaml"
    map_path.write_text("# the map before the failed build\nsteps: {}\n")
    before = map_path.read_bytes()
    steps = small_project.parent / "small_steps.py"
    steps.write_text(
        steps.read_text().replace(
            "def training(input, output):\n    import json",
            "def training(input, output):\n    import json\n    from sklearn.model_selection import train_test_split",
        )
    )
    code = run(small_project, "build", "--push")
    err = capsys.readouterr().err
    assert code == 6, err
    assert "step training imports sklearn: not installed in image training" in err
    assert map_path.read_bytes() == before
    # Staged maybe (the push runs beside the check), never published under its content tag.
    assert not re.search(r"\] training +pushed ", err)
    tag = re.search(r"\] training +build (\S+:in-[0-9a-f]{16}) on ", err)
    assert tag and served_digest(tag[1]) is None


def test_extra_tags_point_at_the_pinned_digest(small_project, capsys):
    assert run(small_project, "build", "--push", "--tag", "commit-abc123", "--tag", "release") == 0
    mapping = image_map.load(small_project.parent / "image_map.yaml")
    for ref in mapping.steps.values():
        name, digest = ref.split("@")
        repository = name.rsplit(":", 1)[0]
        assert served_digest(f"{repository}:commit-abc123") == digest
        assert served_digest(f"{repository}:release") == digest
    assert run(small_project, "build", "--tag", "x") == 2
    assert "--tag needs --push" in capsys.readouterr().err


def _remove_local_images(engine_client, prefix: str) -> None:
    """Untag this project's images (an image a child builds on stays, untagged, until the child goes)."""
    for image in engine_client.images.list():
        for name in image.tags + image.attrs.get("RepoDigests", []):
            if f"/{prefix}/" in name:
                with contextlib.suppress(docker.errors.ImageNotFound):  # gone with its last name already
                    engine_client.images.remove(name, force=True)


def test_pushed_images_pull_back_by_digest_and_run(small_project, engine_client, registry, capsys):
    """push_with = "skopeo": skopeo pushes every image; an image adding no layer (download here) shares every
    blob with its base (skopeo reuses what it pushed). The engine must pull and run what was pushed."""
    small_project.write_text(
        small_project.read_text().replace("[tool.buildtool]\n", '[tool.buildtool]\npush_with = "skopeo"\n', 1)
    )
    (small_project.parent / "images" / "download" / "Dockerfile").write_text(
        "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nLABEL step=download\n"
    )
    assert run(small_project, "build", "--push") == 0
    err = capsys.readouterr().err
    for name in ("base", "download", "training", "upload"):
        assert re.search(rf"\] {name} +push via skopeo ", err), name
    assert " training  push (skopeo): Writing manifest" in err
    mapping = image_map.load(small_project.parent / "image_map.yaml")
    client = Registry()
    try:
        layers = {
            name: [layer["digest"] for layer in client.manifest(parse(mapping.images[name].reference))["layers"]]
            for name in ("base", "download")
        }
    finally:
        client.close()
    assert layers["download"] == layers["base"]  # stored once
    _remove_local_images(engine_client, config.load(small_project).repository)
    engine = Engine()
    try:
        own = {"download_training_dataset": "download", "training": "training", "upload_model": "upload"}
        for step, ref in mapping.steps.items():
            assert engine.image_id(ref) is None, step
            engine.pull(ref)
            result = engine.call(ref, ["python3", "-c", "import os; print(' '.join(os.listdir('/opt')))"])
            assert result.exit_code == 0, result.output
            folders = set(result.output.split())  # what the layers put in /opt (COPY . /opt/<image>/)
            assert "base" in folders, step
            assert {"download", "training", "upload"} & folders == ({own[step]} - {"download"}), step
    finally:
        engine.close()


def test_the_engine_pushes_small_images(small_project, engine_client, capsys):
    """push_with = "auto" (the default): images adding a few kB push through the engine (`docker push`)."""
    assert run(small_project, "build", "--push") == 0
    err = capsys.readouterr().err
    assert "layer(s) done" in err and "push (skopeo)" not in err  # the engine's push, not skopeo's
    for name in ("base", "download", "training", "upload"):
        assert re.search(rf"\] {name} +push via engine ", err), name
    mapping = image_map.load(small_project.parent / "image_map.yaml")
    for step, ref in mapping.steps.items():
        name, digest = ref.split("@")
        assert served_digest(name) == digest, step
    assert run(small_project, "compile") == 0 and run(small_project, "verify") == 0


def _layers(ref: str) -> list[tuple[str, int]]:
    client = Registry()
    try:
        return [(layer["digest"], layer["size"]) for layer in client.manifest(parse(ref))["layers"]]
    finally:
        client.close()


def test_a_fresh_runner_pushes_only_the_layer_the_registry_lacks(small_project, engine_client, capsys):
    """An engine without the images (a fresh CI runner), one line added to training: the previous image is pulled,
    and whichever pusher runs, only the new layer is sent; the registry already holds every other."""
    dockerfile = small_project.parent / "images" / "training" / "Dockerfile"
    dockerfile.write_text("ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nRUN head -c 3000000 /dev/urandom > /large\n")
    assert run(small_project, "build", "--push") == 0
    old = image_map.load(small_project.parent / "image_map.yaml")
    prefix = config.load(small_project).repository
    for image in engine_client.images.list():
        for tag in image.tags + [d for d in image.attrs.get("RepoDigests", [])]:
            if f"/{prefix}/" in tag:
                with contextlib.suppress(docker.errors.ImageNotFound):  # gone with a tag removed before
                    engine_client.images.remove(tag, force=True)
    dockerfile.write_text(dockerfile.read_text() + "RUN echo one more line > /one-more\n")
    capsys.readouterr()
    assert run(small_project, "build", "--push") == 0
    err = capsys.readouterr().err
    assert "pull " in err and "the map's previous image" in err
    match = re.search(
        r"\] training +push via (\w+) \((\d+) MB in (\d+) layer\(s\) the registry lacks; it holds the "
        r"other (\d+)\)",
        err,
    )
    assert match, err
    assert (match[1], match[2], match[3]) == ("engine", "0", "1") and int(match[4]) >= 3, err
    new = image_map.load(small_project.parent / "image_map.yaml")
    before, after = _layers(old.images["training"].reference), _layers(new.images["training"].reference)
    assert after[:-1] == before and after[-1] not in before  # every earlier blob reused, one new one


def test_both_builders_give_the_same_inputs_digests(small_project, tmp_path, capsys):
    """The builder is not an input: the same sources plan the same tags with either."""
    text = small_project.read_text()
    tags = {}
    for way in ("classic", "buildkit"):
        small_project.write_text(re.sub(r'builder = "\w+"', f'builder = "{way}"', text))
        capsys.readouterr()
        assert run(small_project, "build", "--dry-run") == 0
        tags[way] = sorted(
            line.split()[-1] for line in capsys.readouterr().out.splitlines() if line.startswith(("build ", "reuse "))
        )
    assert tags["classic"] == tags["buildkit"] and len(tags["classic"]) == 4
