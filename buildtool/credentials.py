"""The engine's credential store (`docker login`): what it holds for one registry.

The one module that reads it. It asks no engine: it reads DOCKER_CONFIG (or ~/.docker/config.json) and runs
the credential helper that file names, through the docker SDK's own reader (`docker.auth`: `auths`,
`credsStore` and `credHelpers`), so buildtool finds exactly what the engine's CLI would send.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from .reference import DOCKER_HUB

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Credentials:
    """What the engine's credential store (`docker login`, credential helpers included) holds for a registry."""

    username: str
    password: str
    identity_token: str | None = None

    def __repr__(self) -> str:  # never a secret in a log or a traceback
        return f"Credentials(username={self.username!r}, password=***)"


def stored_credentials(domain: str) -> Credentials | None:
    """The engine's stored credentials for registry `domain` (DOCKER_CONFIG or ~/.docker/config.json), or None."""
    from docker import auth as docker_auth  # here: a registry that asks for no credentials never loads the SDK

    registry = None if domain == DOCKER_HUB else domain
    try:
        found = docker_auth.resolve_authconfig(docker_auth.load_config(), registry=registry)
    except Exception as exc:  # a broken credential helper must not hide the real request
        log.debug("no credentials for %s: %s", domain, exc.__class__.__name__)
        return None
    if not found:
        return None
    # An `auths` entry comes back with lowercase keys, a credential helper's answer capitalized.
    username, password = found.get("username") or found.get("Username"), found.get("password") or found.get("Password")
    if username and password:
        return Credentials(str(username), str(password), found.get("IdentityToken"))
    return None
