#!/usr/bin/env bash
# The plain way to build and push the pipeline's images, as a team would write
# it by hand: `docker build` the base, then the three step images on top of it
# (BASE_IMAGE build argument), then `docker push` all four. No content hashing,
# no registry lookups: every run builds (with the engine's cache) and pushes.
# Each image is built from its context in TREE with the hand-written Dockerfile
# and .dockerignore frozen in bench/plain/NAME/ (what the images had before
# their Dockerfiles were rendered from templates).
#
#   bench/plain_build.sh [TREE]     TREE holds images/ (default: the current folder)
#
# Environment:
#   REGISTRY    registry host:port                 (127.0.0.1:5000)
#   PREFIX      repository prefix under it         (plain)
#   TAG         tag given to every image           (latest)
#   BASE_IMAGE  external base of the base image    (required, e.g. 127.0.0.1:5000/buildtool/python:3.11-bookworm)
#   PLAIN_DOCKERFILES  folder of the frozen NAME/Dockerfile files (bench/plain)
#   PULL_CACHE  1: first pull the images the last run pushed and build with
#               --cache-from them, as a CI script on a fresh runner would (0)
#
# The "== build NAME" / "== push NAME" lines let bench/build_speed.py time each part.
set -euo pipefail

tree=${1:-.}
registry=${REGISTRY:-127.0.0.1:5000}
prefix=${PREFIX:-plain}
tag=${TAG:-latest}
base_image=${BASE_IMAGE:?set BASE_IMAGE to the external python base image}
pull_cache=${PULL_CACHE:-0}
repo=$registry/$prefix
frozen=${PLAIN_DOCKERFILES:-$(cd "$(dirname "$0")" && pwd)/plain}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

context() { # $1 image name: its context from the tree, with the frozen Dockerfile and .dockerignore
  rm -rf "${work:?}/$1"
  cp -a "$tree/images/$1" "$work/$1"
  cp "$frozen/$1/Dockerfile" "$frozen/$1/.dockerignore" "$work/$1/"
  printf '%s\n' "$work/$1"
}

cache_from() { # $1 image name: the --cache-from option, when its previous image could be pulled
  if [ "$pull_cache" = 1 ] && docker pull --quiet "$repo/$1:$tag" >/dev/null 2>&1; then
    printf -- '--cache-from=%s\n' "$repo/$1:$tag"
  fi
}

if [ "$pull_cache" = 1 ]; then echo "== pull"; fi
declare -A cache
for name in base download training upload; do cache[$name]=$(cache_from "$name"); done

echo "== build base"
# shellcheck disable=SC2086  # an empty option is no option
docker build ${cache[base]} --build-arg BASE_IMAGE="$base_image" -t "$repo/base:$tag" "$(context base)"
for name in download training upload; do
  echo "== build $name"
  # shellcheck disable=SC2086
  docker build ${cache[$name]} --build-arg BASE_IMAGE="$repo/base:$tag" -t "$repo/$name:$tag" "$(context "$name")"
done

for name in base download training upload; do
  echo "== push $name"
  docker push "$repo/$name:$tag"
done
echo "== done"
