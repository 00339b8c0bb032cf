"""Typed errors: one root, one subclass per kind of failure, each with its exit code.

Only `buildtool.cli.main` turns them into an exit; library code raises them.
Messages are one line that names the file, key, image or step, and the fix.
"""

from __future__ import annotations


class BuildtoolError(Exception):
    """Root of every failure buildtool reports to the user."""

    exit_code = 1


class ConfigError(BuildtoolError):
    """`[tool.buildtool]` is missing, malformed or points at missing files."""

    exit_code = 2


class ImageMapError(BuildtoolError):
    """`image_map.yaml` is missing, malformed, incomplete or not digest-pinned."""

    exit_code = 3


class StaleMapError(ImageMapError):
    """`image_map.yaml` was built from other sources than the working tree's."""

    exit_code = 4


class EngineError(BuildtoolError):
    """The Docker engine is unreachable or refused a request."""

    exit_code = 5


class BuildError(BuildtoolError):
    """An image failed to build."""

    exit_code = 6


class PushError(BuildtoolError):
    """An image failed to push, or the registry reported no digest for it."""

    exit_code = 7


class RegistryError(BuildtoolError):
    """The registry's HTTP API could not be read."""

    exit_code = 8


class CompileError(BuildtoolError):
    """The pipeline could not be compiled, or the result is not pinned as the map says."""

    exit_code = 9


class VerifyError(BuildtoolError):
    """A compiled pipeline failed verification."""

    exit_code = 10


class StalePipelineError(VerifyError):
    """A compiled pipeline differs from what `compile` makes now from the current sources and image map."""

    exit_code = 13


class RunError(BuildtoolError):
    """A compiled pipeline could not be planned, or one of its steps failed when run locally."""

    exit_code = 11


class PlatformError(BuildtoolError):
    """The local training platform could not serve or seed: a bad uid or option, or a port already in use."""

    exit_code = 12


class ClusterError(BuildtoolError):
    """The Kubeflow Pipelines API could not be used: unreachable, TLS, refused credentials, not found, invalid."""

    exit_code = 16


class ClusterRunFailed(BuildtoolError):
    """A run started on the cluster ended Failed or Error."""

    exit_code = 17


class ClusterRunTimeout(BuildtoolError):
    """A run started on the cluster had not ended when the wait's timeout passed."""

    exit_code = 18


class RenderedStaleError(BuildtoolError):
    """A rendered Dockerfile (or layer lock) differs from what its template renders: stale or edited by hand."""

    exit_code = 14


class TemplateError(BuildtoolError):
    """A Dockerfile template failed to render: a syntax error, an undefined variable or a refused operation."""

    exit_code = 15


class Interrupted(BuildtoolError):
    """SIGINT or SIGTERM stopped the run; the exit code is the shell's for that signal (128 + its number)."""

    def __init__(self, signum: int, done: str | None = None) -> None:
        import signal

        self.signum = signum
        self.exit_code = 128 + signum
        done = done or (
            "the running builds, checks and pushes were stopped, their staging images deleted; no tag "
            "and no image map was written after the signal"
        )
        super().__init__(f"interrupted by {signal.Signals(signum).name}: {done}")
