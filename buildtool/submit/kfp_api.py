"""The Kubeflow Pipelines v1 API, through kfp 1.8's own `kfp.Client`: the only module that talks to it.

Everything else gets plain data (ids, names, states) and ClusterError. Three things kfp.Client leaves open
are set here, on the urllib3 pool its generated client sends through:

- a timeout on every call (kfp passes none, so a silent server would hang the command);
- retries of reads (GET) on a dropped connection, 429 and 5xx, with the registry client's urllib3 Retry;
- no redirect followed: every call carries the credential, and a 302 from an ingress is a login page.

kfp.Client's constructor asks /healthz five times, 5 s apart, logging a traceback each time, when no
namespace is set; buildtool asks the API itself, so the client is built with a namespace and kfp's
own context setting is read back afterwards.
"""

from __future__ import annotations

import logging
import ssl
import urllib.parse
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import kfp
import kfp_server_api
import urllib3
from kfp_server_api.exceptions import ApiException

from ..errors import ClusterError
from ..push.registry_retry import retry_policy
from .kfp_answers import (
    entries,
    equals,
    masked,
    refused,
    require_api_answer,
    required_text,
    server_message,
    shown,
    transport,
)
from .kfp_data import AlreadyExists, Auth, NotTheApi, Pipeline, Run, Version

log = logging.getLogger(__name__)

T = TypeVar("T")
CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 120.0  # an upload of a 1 MB workflow, or a list, answered well within it
_PLACEHOLDER_NAMESPACE = "-"  # any non-empty value keeps kfp.Client from polling /healthz in its constructor


class Cluster:
    """A KFP v1 API endpoint (`host`, e.g. http://127.0.0.1:8080 through a port-forward, or an ingress URL)."""

    def __init__(
        self,
        host: str,
        auth: Auth,
        *,
        namespace: str | None = None,
        ca_cert: Path | None = None,
        read_timeout: float = READ_TIMEOUT,
    ) -> None:
        self.host = host.rstrip("/")
        self.auth = auth
        self.namespace = namespace
        try:
            self._client = kfp.Client(
                host=self.host,
                namespace=namespace or _PLACEHOLDER_NAMESPACE,
                existing_token=auth.token,
                cookies=auth.cookie,
                ssl_ca_cert=str(ca_cert) if ca_cert else None,
            )
            # kfp's own context (~/.config/kfp/context.json) decides the namespace when --namespace is not given.
            self._client._load_context_setting_or_default()
            settings = self._client._context_setting
            if not isinstance(settings, dict):
                raise ValueError("kfp's context.json is not a JSON object")
        except (ValueError, TypeError, AttributeError, KeyError, OSError, ssl.SSLError) as exc:
            # kfp reads its context.json in the constructor and indexes it as an object.
            raise ClusterError(
                f"cannot set up the client for {self.host}: {exc.__class__.__name__}: "
                f"{shown(str(exc))}; check ~/.config/kfp/context.json"
            ) from None
        if namespace is not None or not isinstance(settings.get("namespace"), str):
            settings["namespace"] = namespace or ""
        # One generated ApiClient serves every API of the client: its urllib3 pool sends every call.
        self._pool: urllib3.PoolManager = self._client._run_api.api_client.rest_client.pool_manager
        timeout = urllib3.Timeout(connect=CONNECT_TIMEOUT, read=read_timeout)
        send = self._pool.request

        def request(method: str, url: str, *args: Any, **kw: Any) -> Any:
            if kw.get("timeout") is None:
                kw["timeout"] = timeout
            kw["redirect"] = False
            kw.setdefault("retries", retry_policy())
            response = send(method, url, *args, **kw)
            require_api_answer(response)
            return response

        self._pool.request = request

    # -- reading --------------------------------------------------------------------------------------------

    def multi_user(self) -> bool:
        """Whether the server runs in multi-user mode (then experiments and runs belong to a namespace)."""
        response = self._call("reach the API (/apis/v1beta1/healthz)", self._client.healthzs.get_healthz)
        return getattr(response, "multi_user", False) is True

    def namespace_in_use(self) -> str | None:
        """--namespace, else kfp's own context setting, else None."""
        return str(self._client.get_user_namespace() or "") or None

    def find_pipeline(self, name: str) -> Pipeline | None:
        response = self._call(
            f"list the pipelines named {name!r}",
            lambda: self._client.pipelines.list_pipelines(filter=equals("name", name), page_size=10),
        )
        found = [p for p in entries(response.pipelines, "pipeline") if p.name == name]
        if len(found) > 1:
            raise ClusterError(
                f"{len(found)} pipelines are named {name!r} on {self.host}; "
                "delete the extra ones or pass another --pipeline-name"
            )
        if not found:
            return None
        return Pipeline(
            required_text(found[0].id, "a pipeline's id"), name, getattr(found[0].default_version, "id", None)
        )

    def find_version(self, pipeline: Pipeline, name: str) -> Version | None:
        response = self._call(
            f"list the versions named {name!r} of pipeline {pipeline.name!r}",
            lambda: self._client.pipelines.list_pipeline_versions(
                resource_key_type=kfp_server_api.ApiResourceType.PIPELINE,
                resource_key_id=pipeline.id,
                filter=equals("name", name),
                page_size=10,
            ),
        )
        found = [v for v in entries(response.versions, "version") if v.name == name]
        return Version(required_text(found[0].id, "a version's id"), name) if found else None

    def find_experiment(self, name: str) -> str | None:
        """The id of the experiment `name` (in the namespace, when there is one), or None."""
        namespace = self._client.get_user_namespace() or None
        response = self._call(
            f"list the experiments named {name!r}",
            lambda: self._client.list_experiments(namespace=namespace, filter=equals("name", name), page_size=10),
        )
        found = [e for e in entries(response.experiments, "experiment") if e.name == name]
        return required_text(found[0].id, "an experiment's id") if found else None

    def run(self, run_id: str) -> Run:
        response = self._call(f"read run {run_id}", lambda: self._client.get_run(run_id))
        run = response.run
        return Run(required_text(run.id, "the run's id"), shown(str(run.name or "")), shown(str(run.status or "")))

    def run_version(self, run_id: str) -> str | None:
        """The pipeline version a run was created from (its CREATOR reference)."""
        response = self._call(f"read run {run_id}", lambda: self._client.get_run(run_id))
        for ref in response.run.resource_references or []:
            if ref.key.type == kfp_server_api.ApiResourceType.PIPELINE_VERSION:
                return str(ref.key.id)
        return None

    def ui_link(self, run_id: str) -> str:
        return f"{self._client._get_url_prefix()}/#/runs/details/{urllib.parse.quote(run_id)}"

    # -- changing ---------------------------------------------------------------------------------------------

    def create_pipeline(self, name: str, package: Path) -> Pipeline:
        """Upload `package` as the new pipeline `name` (KFP makes it its first version, named `name` too)."""
        created = self._call(
            f"create pipeline {name!r}", lambda: self._client.upload_pipeline(str(package), pipeline_name=name)
        )
        return Pipeline(
            required_text(created.id, "the new pipeline's id"), name, getattr(created.default_version, "id", None)
        )

    def create_version(self, pipeline: Pipeline, name: str, package: Path) -> Version:
        created = self._call(
            f"create version {name!r} of pipeline {pipeline.name!r}",
            lambda: self._client.upload_pipeline_version(str(package), name, pipeline_id=pipeline.id),
        )
        return Version(required_text(created.id, "the new version's id"), name)

    def create_experiment(self, name: str) -> str:
        namespace = self._client.get_user_namespace() or None
        references = []
        if namespace:
            references.append(
                kfp_server_api.ApiResourceReference(
                    key=kfp_server_api.ApiResourceKey(id=namespace, type=kfp_server_api.ApiResourceType.NAMESPACE),
                    relationship=kfp_server_api.ApiRelationship.OWNER,
                )
            )
        body = kfp_server_api.ApiExperiment(name=name, resource_references=references)
        created = self._call(
            f"create experiment {name!r}", lambda: self._client.experiments.create_experiment(body=body)
        )
        return required_text(created.id, "the new experiment's id")

    def create_run(
        self, experiment_id: str, name: str, pipeline: Pipeline, version: Version, parameters: Mapping[str, str]
    ) -> Run:
        created = self._call(
            f"start run {name!r} of version {version.name!r}",
            lambda: self._client.run_pipeline(experiment_id, name, params=dict(parameters), version_id=version.id),
        )
        return Run(required_text(created.id, "the new run's id"), name, shown(str(created.status or "")))

    # -- errors ---------------------------------------------------------------------------------------------

    def _call(self, what: str, call: Callable[[], T]) -> T:
        try:
            result = call()
        except ApiException as exc:
            if exc.status == 409:
                raise AlreadyExists(what) from None
            message = server_message(exc.body, exc.reason)
            location = (exc.headers or {}).get("Location", "?")
            error = refused(what, self.host, self.auth, self.namespace, exc.status, message, location)
            raise masked(error, self.auth) from None
        except urllib3.exceptions.HTTPError as exc:
            raise masked(transport(what, self.host, exc), self.auth) from None
        except (NotTheApi, OSError, ValueError, TypeError, AttributeError, KeyError, RecursionError) as exc:
            # kfp raises ValueError for two pipelines of a name; the generated models raise on an answer that is
            # not the API's (a proxy's HTML page, a wrong shape).
            error = ClusterError(
                f"could not {what} on {self.host}: the answer is not the KFP v1 API's "
                f"({exc.__class__.__name__}: {shown(str(exc))})"
            )
            raise masked(error, self.auth) from None
        if result is None:
            raise ClusterError(
                f"could not {what} on {self.host}: the server sent an empty answer; is --host a KFP v1 API?"
            )
        return result
