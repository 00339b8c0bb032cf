#!/usr/bin/env bash
# The whole main job from a fresh Debian machine: local engine, registry and
# base image, the venv, then build and push the step images, regenerate
# image_map.yaml, compile pipeline.yaml against it, and seed a local platform
# with a demo training dataset.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

started=$(date +%s)
infra=$(scripts/infra-up.sh) || exit   # prints BUILDTOOL_BASE_IMAGE=...
eval "$infra"
export BUILDTOOL_BASE_IMAGE
scripts/venv.sh
.venv/bin/buildtool build --push
.venv/bin/buildtool compile
.venv/bin/buildtool verify
# A local platform with a dataset, so the steps can run right away (README: "The training platform").
.venv/bin/buildtool platform seed demo-dataset --data .platform-data
echo "quickstart: done in $(( $(date +%s) - started ))s: pipeline.yaml is pinned to the images in image_map.yaml" >&2
echo "quickstart: this machine builds on its own base image; before running buildtool yourself:" >&2
echo "  export BUILDTOOL_BASE_IMAGE=$BUILDTOOL_BASE_IMAGE" >&2
