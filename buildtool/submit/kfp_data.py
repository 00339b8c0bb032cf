"""What the door to the Kubeflow Pipelines API (`kfp_api`) takes and hands out: plain data, no kfp."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["AlreadyExists", "Auth", "NotTheApi", "Pipeline", "Run", "Version"]


class AlreadyExists(Exception):
    """The server answered 409: another caller created that name first."""


class NotTheApi(Exception):
    """A 2xx answer that is not a JSON object: a proxy's or a login page, not the API's."""


@dataclass(frozen=True)
class Auth:
    """Which credential goes with each call; `label` names its kind and source, never its value."""

    label: str
    token: str | None = None
    cookie: str | None = None

    def __repr__(self) -> str:
        return f"Auth({self.label!r})"


@dataclass(frozen=True)
class Pipeline:
    id: str
    name: str
    default_version_id: str | None


@dataclass(frozen=True)
class Version:
    id: str
    name: str


@dataclass(frozen=True)
class Run:
    id: str
    name: str
    state: str  # "" while the server has not reported one yet
