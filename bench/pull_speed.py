#!/usr/bin/env python3
"""Seconds of a `docker pull` whose layers the engine must download and extract: with or without unpigz.

A pull skips a blob whose digest the engine knows, and an image whose config it holds, so each variant N
is a throw-away copy of IMAGE that the engine has never seen: every layer blob over --min-mb is
recompressed (same tar, gzip level 6, header mtime N, so a new digest and the same diff ID), the config
gets a label bench.pull-variant=N (a new image ID), the other blobs are mounted from IMAGE's repository,
and the manifest is put as bench-pull/v<N>. The script then times `docker pull bench-pull/v<N>@<digest>`,
watches whether dockerd runs `unpigz` children meanwhile, removes the pulled image and deletes the
manifest. Whether unpigz is used is the engine's choice (it looks it up on its PATH at each
decompression, no restart), so run variants before and after `apt-get install pigz`, and alternate
with `apt-get remove pigz` for pairs taken under the same load:

  .venv/bin/python bench/pull_speed.py 1 2 3 --output bench/results/pull-pigz-DATE.json
  apt-get install -y -q --no-install-recommends pigz
  .venv/bin/python bench/pull_speed.py 4 5 6 --output bench/results/pull-pigz-DATE.json

--output accumulates variants in one file and recomputes the medians with and without unpigz.
"""

from __future__ import annotations

import argparse
import datetime
import gzip
import hashlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

MANIFEST_V2 = "application/vnd.docker.distribution.manifest.v2+json"
CHUNK = 1 << 20


def request(method: str, url: str, body: Any = None, headers: dict[str, str] | None = None) -> Any:
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    return urllib.request.urlopen(req, timeout=600)


def recompress(registry: str, repo: str, digest: str, mtime: int, folder: Path) -> tuple[Path, str, int]:
    """The blob's tar regzipped with header mtime `mtime`: its file, digest and size."""
    src = folder / "in.gz"
    dst = folder / f"{digest[7:19]}.gz"
    with request("GET", f"http://{registry}/v2/{repo}/blobs/{digest}") as resp, src.open("wb") as f:
        shutil.copyfileobj(resp, f, CHUNK)
    with gzip.open(src, "rb") as tar, dst.open("wb") as raw:
        # filename="" keeps the temporary file's name out of the header: only mtime differs per variant.
        with gzip.GzipFile(filename="", mode="wb", compresslevel=6, fileobj=raw, mtime=mtime) as out:
            shutil.copyfileobj(tar, out, CHUNK)
    src.unlink()
    sha = hashlib.sha256()
    with dst.open("rb") as f:
        while chunk := f.read(CHUNK):
            sha.update(chunk)
    return dst, f"sha256:{sha.hexdigest()}", dst.stat().st_size


def upload(registry: str, repo: str, digest: str, data: bytes | Path) -> None:
    """A monolithic upload: POST opens it, one PUT with ?digest= sends the bytes and closes it."""
    with request("POST", f"http://{registry}/v2/{repo}/blobs/uploads/") as resp:
        location = resp.headers["Location"]
    if location.startswith("/"):
        location = f"http://{registry}{location}"
    url = f"{location}{'&' if '?' in location else '?'}digest={digest}"
    size = len(data) if isinstance(data, bytes) else data.stat().st_size
    headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size)}
    if isinstance(data, bytes):
        request("PUT", url, data, headers).close()
    else:
        with data.open("rb") as f:
            request("PUT", url, f, headers).close()


def mount(registry: str, repo: str, digest: str, source: str) -> None:
    with request("POST", f"http://{registry}/v2/{repo}/blobs/uploads/?mount={digest}&from={source}") as resp:
        # 202 would be an upload opened instead: the registry did not find the blob in `source`.
        if resp.status != 201:
            raise RuntimeError(f"mount of {digest} from {source} into {repo}: HTTP {resp.status}, not 201")


def make_variant(registry: str, source: str, ref: str, variant: int, min_bytes: int, folder: Path) -> tuple[str, str]:
    """Repository and manifest digest of variant `variant` of source:ref."""
    repo = f"bench-pull/v{variant}"
    with request("GET", f"http://{registry}/v2/{source}/manifests/{ref}", headers={"Accept": MANIFEST_V2}) as resp:
        manifest = json.load(resp)
    if manifest.get("mediaType") != MANIFEST_V2:
        raise RuntimeError(f"{source}:{ref} is not a schema 2 manifest ({manifest.get('mediaType')})")
    with request("GET", f"http://{registry}/v2/{source}/blobs/{manifest['config']['digest']}") as resp:
        config = json.load(resp)
    # A new image ID: the engine skips a pull whose config it already holds.
    config["config"]["Labels"] = {**(config["config"].get("Labels") or {}), "bench.pull-variant": str(variant)}
    config_bytes = json.dumps(config, separators=(",", ":")).encode()
    config_digest = f"sha256:{hashlib.sha256(config_bytes).hexdigest()}"
    upload(registry, repo, config_digest, config_bytes)
    manifest["config"].update(digest=config_digest, size=len(config_bytes))
    for layer in manifest["layers"]:
        if layer["size"] > min_bytes:
            path, digest, size = recompress(registry, source, layer["digest"], variant, folder)
            upload(registry, repo, digest, path)
            path.unlink()
            layer.update(digest=digest, size=size)
        else:
            mount(registry, repo, layer["digest"], source)
    body = json.dumps(manifest, indent=3).encode()
    with request("PUT", f"http://{registry}/v2/{repo}/manifests/v{variant}", body, {"Content-Type": MANIFEST_V2}):
        pass
    return repo, f"sha256:{hashlib.sha256(body).hexdigest()}"


def unpigz_children(stop: threading.Event, seen: list[int]) -> None:
    """Counts the unpigz processes whose parent is dockerd, until `stop`."""
    while not stop.wait(0.2):
        out = subprocess.run(["ps", "-eo", "ppid=,comm="], capture_output=True, text=True, check=False).stdout
        dockerd = set(subprocess.run(["pidof", "dockerd"], capture_output=True, text=True).stdout.split())
        seen.extend(1 for line in out.splitlines() if line.split()[1:] == ["unpigz"] and line.split()[0] in dockerd)


def pull(registry: str, repo: str, digest: str) -> dict[str, Any]:
    image = f"{registry}/{repo}@{digest}"
    stop, seen = threading.Event(), []
    watcher = threading.Thread(target=unpigz_children, args=(stop, seen))
    watcher.start()
    load = float(Path("/proc/loadavg").read_text().split()[0])
    started = time.monotonic()
    try:
        out = subprocess.run(["docker", "pull", image], check=True, capture_output=True, text=True).stdout
    finally:
        seconds = round(time.monotonic() - started, 2)
        stop.set()
        watcher.join()
    subprocess.run(["docker", "rmi", image], check=True, stdout=subprocess.DEVNULL)
    return {
        "seconds": seconds,
        "unpigz_seen": bool(seen),
        "layers_pulled": out.count("Pull complete"),
        "load_average_before": load,
    }


def delete_manifest(registry: str, repo: str, digest: str) -> None:
    request("DELETE", f"http://{registry}/v2/{repo}/manifests/{digest}").close()


def summary(variants: list[dict[str, Any]]) -> dict[str, Any]:
    without = [v["seconds"] for v in variants if not v["unpigz_seen"]]
    with_ = [v["seconds"] for v in variants if v["unpigz_seen"]]
    out: dict[str, Any] = {"median_without_unpigz_s": None, "median_with_unpigz_s": None, "ratio": None}
    # ratio: median without over median with; above 1.25 means the pull with unpigz takes 20 % less time.
    if without:
        out["median_without_unpigz_s"] = round(statistics.median(without), 2)
    if with_:
        out["median_with_unpigz_s"] = round(statistics.median(with_), 2)
    if without and with_:
        out["ratio"] = round(statistics.median(without) / statistics.median(with_), 2)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("variants", nargs="+", type=int, help="variant numbers (the gzip mtime), never reused")
    parser.add_argument("--registry", default="127.0.0.1:5000")
    parser.add_argument("--image", default="buildtool/training:in-6a0151ad88a2625b", help="repository:tag to copy")
    parser.add_argument("--min-mb", type=int, default=10, help="layers larger than this are recompressed")
    parser.add_argument("--output", type=Path, help="JSON file the variants are added to")
    args = parser.parse_args()
    source, ref = args.image.rsplit(":", 1)
    results = []
    with tempfile.TemporaryDirectory(prefix="pull-speed-") as tmp:
        for n in args.variants:
            started = time.monotonic()
            repo, digest = make_variant(args.registry, source, ref, n, args.min_mb * 1_000_000, Path(tmp))
            prepared = round(time.monotonic() - started, 1)
            try:
                result = {"variant": n, "image": f"{args.registry}/{repo}@{digest}", "prepare_s": prepared}
                result |= pull(args.registry, repo, digest)
            finally:
                delete_manifest(args.registry, repo, digest)
            print(json.dumps(result), flush=True)
            results.append(result)

    if args.output:
        doc: dict[str, Any] = {}
        if args.output.exists():
            doc = json.loads(args.output.read_text())
        doc.setdefault(
            "what",
            f"docker pull of copies of {args.registry}/{args.image} whose layers over {args.min_mb} MB are "
            "regzipped (new digests, same content) and whose config is relabelled: the engine downloads and "
            "extracts every layer; with unpigz on dockerd's PATH and without",
        )
        doc["date"] = datetime.date.today().isoformat()
        doc["load_average_at_end"] = [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
        doc["machine"] = {
            "cpus": os.cpu_count(),
            "kernel": platform.release(),
            "engine": subprocess.run(
                ["docker", "version", "--format", "{{.Server.Version}}"], capture_output=True, text=True
            ).stdout.strip(),
        }
        doc.setdefault("commands", []).append(" ".join(["bench/pull_speed.py", *sys.argv[1:]]))
        doc["variants"] = sorted([*doc.get("variants", []), *results], key=lambda v: v["variant"])
        doc.update(summary(doc["variants"]))
        args.output.write_text(json.dumps(doc, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
