"""Whether the docker SDK needs its ssh transport in this process, decided before the SDK loads.

docker-py imports its ssh transport, and with it paramiko (about 50 ms, a twentieth of a small build), on
every import, whether or not the engine is reached over ssh://. The engine is reached over ssh:// only when
DOCKER_HOST says so, or a docker context other than the default names the engine (DOCKER_CONTEXT or the
config's currentContext): endpoint.py resolves it as the docker CLI does. Anything unclear keeps the transport.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path

__all__ = ["needed", "skip_unless_needed"]

_SSH_MODULE = "docker.transport.sshconn"
_CONFIG_LIMIT = 1 << 20  # a docker config larger than this is not read here: the transport stays


def needed(environ: Mapping[str, str]) -> bool:
    """True unless the engine is certainly not reached over ssh://."""
    host = environ.get("DOCKER_HOST", "")
    if host:
        return host.startswith("ssh://")
    if environ.get("DOCKER_CONTEXT", "default") != "default":
        return True
    folder = environ.get("DOCKER_CONFIG") or os.path.join(environ.get("HOME") or os.path.expanduser("~"), ".docker")
    config = Path(folder) / "config.json"
    try:
        if config.stat().st_size > _CONFIG_LIMIT:
            return True
        document = json.loads(config.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return False
    except (OSError, ValueError):
        return True
    current = document.get("currentContext", "default") if isinstance(document, dict) else None
    return current not in ("", "default")


def skip_unless_needed(environ: Mapping[str, str]) -> None:
    """Make docker-py load without its ssh transport when the engine is not reached over ssh:// (it treats the
    missing module as paramiko not being installed). Nothing changes once the SDK is loaded."""
    if "docker" not in sys.modules and not needed(environ):
        sys.modules.setdefault(_SSH_MODULE, None)  # type: ignore[arg-type]
