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

import json
import logging
import ssl
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import kfp
import kfp_server_api
import urllib3
from kfp_server_api.exceptions import ApiException

from ..errors import ClusterError
from ..push.registry_retry import retry_policy

log = logging.getLogger(__name__)

T = TypeVar("T")
CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 120.0  # an upload of a 1 MB workflow, or a list, answered well within it
_MESSAGE_LIMIT = 300  # characters of a server's message quoted in an error
_PLACEHOLDER_NAMESPACE = "-"  # any non-empty value keeps kfp.Client from polling /healthz in its constructor


class AlreadyExists(Exception):
    """The server answered 409: another caller created that name first."""


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


def _equals(key: str, value: str) -> str:
    """A v1beta1 `filter` (a JSON-serialized Filter protobuf) selecting `key` == `value`."""
    return json.dumps({"predicates": [{"op": "EQUALS", "key": key, "stringValue": value}]})


def _shown(text: str) -> str:
    """A server's message on one line, control characters escaped, shortened."""
    flat = text.encode("unicode_escape", "backslashreplace").decode("ascii")
    return flat if len(flat) <= _MESSAGE_LIMIT else flat[:_MESSAGE_LIMIT] + "..."


def _server_message(exc: ApiException) -> str:
    body = exc.body.decode("utf-8", "replace") if isinstance(exc.body, bytes) else str(exc.body or "")
    try:
        parsed = json.loads(body)
    except ValueError:
        return _shown(body.strip()) or str(exc.reason or "")
    if isinstance(parsed, dict):
        for key in ("error", "message"):
            if isinstance(parsed.get(key), str) and parsed[key]:
                return _shown(parsed[key])
    return _shown(body.strip())


def _text(value: object, what: str) -> str:
    """A non-empty string the server must have sent (an id, a name); ClusterError otherwise."""
    if not isinstance(value, str) or not value or len(value) > 1024:
        raise ClusterError(
            f"the server's answer gives {what} as {_shown(repr(value))[:80]}, not an identifier; "
            "is --host a KFP v1 API?"
        )
    return value


class NotTheApi(Exception):
    """A 2xx answer that is not a JSON object: a proxy's or a login page, not the API's."""


def _require_api_answer(response: Any) -> None:
    """The generated client reads any 2xx body it cannot parse as an empty object, so a login page would look like
    "no pipeline of that name": refuse it here, where the raw answer is still at hand."""
    if not 200 <= response.status < 300:
        return
    kind = str(response.headers.get("Content-Type", "")).split(";")[0].strip().lower()
    try:
        parsed = json.loads(response.data or b"")
    except (ValueError, RecursionError):
        parsed = None
    if kind != "application/json" or not isinstance(parsed, dict):
        raise NotTheApi(
            f"HTTP {response.status} with {kind or 'no Content-Type'}, {len(response.data or b'')} bytes "
            "that are not a JSON object"
        )


def _entries(items: Any, kind: str) -> list[Any]:
    """The objects of a list answer, each with an id and a name (a list of something else is not the API's)."""
    if items is None:
        return []
    if not isinstance(items, list) or len(items) > 1000:
        raise ClusterError(f"the server's list of {kind}s is not a list of at most 1000; is --host a KFP v1 API?")
    for item in items:
        _text(getattr(item, "id", None), f"a {kind}'s id")
        _text(getattr(item, "name", None), f"a {kind}'s name")
    return items


def _causes(exc: BaseException) -> list[BaseException]:
    found, seen = [], set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        found.append(current)
        reason = getattr(current, "reason", None)
        current = reason if isinstance(reason, BaseException) else (current.__cause__ or current.__context__)
    return found


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
                f"{_shown(str(exc))}; check ~/.config/kfp/context.json"
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
            _require_api_answer(response)
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
            lambda: self._client.pipelines.list_pipelines(filter=_equals("name", name), page_size=10),
        )
        found = [p for p in _entries(response.pipelines, "pipeline") if p.name == name]
        if len(found) > 1:
            raise ClusterError(
                f"{len(found)} pipelines are named {name!r} on {self.host}; "
                "delete the extra ones or pass another --pipeline-name"
            )
        if not found:
            return None
        return Pipeline(_text(found[0].id, "a pipeline's id"), name, getattr(found[0].default_version, "id", None))

    def find_version(self, pipeline: Pipeline, name: str) -> Version | None:
        response = self._call(
            f"list the versions named {name!r} of pipeline {pipeline.name!r}",
            lambda: self._client.pipelines.list_pipeline_versions(
                resource_key_type=kfp_server_api.ApiResourceType.PIPELINE,
                resource_key_id=pipeline.id,
                filter=_equals("name", name),
                page_size=10,
            ),
        )
        found = [v for v in _entries(response.versions, "version") if v.name == name]
        return Version(_text(found[0].id, "a version's id"), name) if found else None

    def find_experiment(self, name: str) -> str | None:
        """The id of the experiment `name` (in the namespace, when there is one), or None."""
        namespace = self._client.get_user_namespace() or None
        response = self._call(
            f"list the experiments named {name!r}",
            lambda: self._client.list_experiments(namespace=namespace, filter=_equals("name", name), page_size=10),
        )
        found = [e for e in _entries(response.experiments, "experiment") if e.name == name]
        return _text(found[0].id, "an experiment's id") if found else None

    def run(self, run_id: str) -> Run:
        response = self._call(f"read run {run_id}", lambda: self._client.get_run(run_id))
        run = response.run
        return Run(_text(run.id, "the run's id"), _shown(str(run.name or "")), _shown(str(run.status or "")))

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
        return Pipeline(_text(created.id, "the new pipeline's id"), name, getattr(created.default_version, "id", None))

    def create_version(self, pipeline: Pipeline, name: str, package: Path) -> Version:
        created = self._call(
            f"create version {name!r} of pipeline {pipeline.name!r}",
            lambda: self._client.upload_pipeline_version(str(package), name, pipeline_id=pipeline.id),
        )
        return Version(_text(created.id, "the new version's id"), name)

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
        return _text(created.id, "the new experiment's id")

    def create_run(
        self, experiment_id: str, name: str, pipeline: Pipeline, version: Version, parameters: Mapping[str, str]
    ) -> Run:
        created = self._call(
            f"start run {name!r} of version {version.name!r}",
            lambda: self._client.run_pipeline(experiment_id, name, params=dict(parameters), version_id=version.id),
        )
        return Run(_text(created.id, "the new run's id"), name, _shown(str(created.status or "")))

    # -- errors ---------------------------------------------------------------------------------------------

    def _call(self, what: str, call: Callable[[], T]) -> T:
        try:
            result = call()
        except ApiException as exc:
            if exc.status == 409:
                raise AlreadyExists(what) from None
            raise self._masked(self._refused(what, exc)) from None
        except urllib3.exceptions.HTTPError as exc:
            raise self._masked(self._transport(what, exc)) from None
        except (NotTheApi, OSError, ValueError, TypeError, AttributeError, KeyError, RecursionError) as exc:
            # kfp raises ValueError for two pipelines of a name; the generated models raise on an answer that is
            # not the API's (a proxy's HTML page, a wrong shape).
            raise self._masked(
                ClusterError(
                    f"could not {what} on {self.host}: the answer is not the KFP v1 API's "
                    f"({exc.__class__.__name__}: {_shown(str(exc))})"
                )
            ) from None
        if result is None:
            raise ClusterError(
                f"could not {what} on {self.host}: the server sent an empty answer; is --host a KFP v1 API?"
            )
        return result

    def _masked(self, error: ClusterError) -> ClusterError:
        """The error with the credential's value (as sent, or echoed by a server) replaced by ***."""
        text = str(error)
        secrets = [v for v in (self.auth.token, self.auth.cookie) if v]
        if self.auth.cookie and "=" in self.auth.cookie:
            secrets.append(self.auth.cookie.split("=", 1)[1])
        for secret in sorted(secrets, key=len, reverse=True):
            if len(secret) >= 4:  # shorter, masking would hide the address and nothing a guess would not find
                for form in (secret, _shown(secret), urllib.parse.quote(secret, safe="")):
                    text = text.replace(form, "***")
        return ClusterError(text) if text != str(error) else error

    def _refused(self, what: str, exc: ApiException) -> ClusterError:
        status, message = exc.status, _server_message(exc)
        head = f"could not {what} on {self.host}: HTTP {status}"
        if status == 401:
            return ClusterError(
                f"{head} (not authenticated; sent {self.auth.label}): {message}; "
                "give a valid token with --token-env or a session cookie with --cookie-env"
            )
        if status == 403:
            return ClusterError(
                f"{head} (forbidden; sent {self.auth.label}): {message}; that identity may not "
                f"do this{' in namespace ' + repr(self.namespace) if self.namespace else ''}: "
                "ask for access, or pass --namespace of a profile you belong to"
            )
        if status in (301, 302, 303, 307, 308):
            target = _shown(str((exc.headers or {}).get("Location", "?")))
            return ClusterError(
                f"{head} redirect to {target}, not followed (it would carry {self.auth.label}); "
                "a login page means the session cookie is missing or expired: --cookie-env, or "
                "--host naming the API itself"
            )
        if status == 404:
            return ClusterError(
                f"{head} (not found): {message}; is --host the KFP API "
                "(e.g. http://127.0.0.1:8080 through `kubectl port-forward svc/ml-pipeline-ui`)?"
            )
        if status in (400, 422):
            return ClusterError(f"{head} (the server refused it as invalid): {message}")
        return ClusterError(f"{head}: {message}")

    def _transport(self, what: str, exc: urllib3.exceptions.HTTPError) -> ClusterError:
        causes = _causes(exc)
        tries = getattr(exc, "tries", None)
        after = f" after {tries} tries" if tries and tries > 1 else ""
        for cause in causes:
            if isinstance(cause, (ssl.SSLError, urllib3.exceptions.SSLError)):
                return ClusterError(
                    f"could not {what} on {self.host}: TLS failed{after} ({_shown(str(cause))}); "
                    "a cluster behind a private CA needs --ca-cert PATH (verification stays on)"
                )
        for cause in causes:
            # urllib3's NewConnectionError (refused, no route) subclasses ConnectTimeoutError: ask it first.
            if isinstance(cause, urllib3.exceptions.NewConnectionError):
                break
            if isinstance(
                cause, (urllib3.exceptions.ReadTimeoutError, urllib3.exceptions.ConnectTimeoutError, TimeoutError)
            ):
                return ClusterError(
                    f"could not {what} on {self.host}: no answer in time{after}; is the port-forward or ingress up?"
                )
        last = causes[-1]
        return ClusterError(
            f"could not {what} on {self.host}: unreachable{after} ({last.__class__.__name__}: "
            f"{_shown(str(last))}); is the port-forward or ingress up, and --host right?"
        )
