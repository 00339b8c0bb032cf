#!/usr/bin/env bash
# The whole main job from a fresh Debian machine: local engine, registry and
# base image, the venv, then build and push the step images, regenerate
# image_map.yaml and compile pipeline.yaml against it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

started=$(date +%s)
eval "$(scripts/infra-up.sh)"   # sets BUILDTOOL_BASE_IMAGE
export BUILDTOOL_BASE_IMAGE
scripts/venv.sh
.venv/bin/buildtool build --push
.venv/bin/buildtool compile
.venv/bin/buildtool verify
echo "quickstart: done in $(( $(date +%s) - started ))s: pipeline.yaml is pinned to the images in image_map.yaml" >&2
