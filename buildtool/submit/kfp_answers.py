"""The Kubeflow Pipelines API's answers read without kfp: a list filter, the ids and names an answer must
hold, a 2xx that is not the API's, and a failed call turned into one ClusterError line that names what
was asked, the host and the fix, with the credential's value masked. `kfp_api` hands these the raw parts
(a status, a body, a urllib3 error); nothing here talks to the server.
"""

from __future__ import annotations

import json
import ssl
import urllib.parse
from typing import Any

import urllib3

from ..errors import ClusterError
from .kfp_data import Auth, NotTheApi

__all__ = [
    "causes",
    "entries",
    "equals",
    "masked",
    "refused",
    "require_api_answer",
    "required_text",
    "server_message",
    "shown",
    "transport",
]

MESSAGE_LIMIT = 300  # characters of a server's message quoted in an error


def equals(key: str, value: str) -> str:
    """A v1beta1 `filter` (a JSON-serialized Filter protobuf) selecting `key` == `value`."""
    return json.dumps({"predicates": [{"op": "EQUALS", "key": key, "stringValue": value}]})


def shown(text: str) -> str:
    """A server's message on one line, control characters escaped, shortened."""
    flat = text.encode("unicode_escape", "backslashreplace").decode("ascii")
    return flat if len(flat) <= MESSAGE_LIMIT else flat[:MESSAGE_LIMIT] + "..."


def required_text(value: object, what: str) -> str:
    """A non-empty string the server must have sent (an id, a name); ClusterError otherwise."""
    if not isinstance(value, str) or not value or len(value) > 1024:
        raise ClusterError(
            f"the server's answer gives {what} as {shown(repr(value))[:80]}, not an identifier; is --host a KFP v1 API?"
        )
    return value


def require_api_answer(response: Any) -> None:
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


def entries(items: Any, kind: str) -> list[Any]:
    """The objects of a list answer, each with an id and a name (a list of something else is not the API's)."""
    if items is None:
        return []
    if not isinstance(items, list) or len(items) > 1000:
        raise ClusterError(f"the server's list of {kind}s is not a list of at most 1000; is --host a KFP v1 API?")
    for item in items:
        required_text(getattr(item, "id", None), f"a {kind}'s id")
        required_text(getattr(item, "name", None), f"a {kind}'s name")
    return items


def causes(exc: BaseException) -> list[BaseException]:
    found, seen = [], set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        found.append(current)
        reason = getattr(current, "reason", None)
        current = reason if isinstance(reason, BaseException) else (current.__cause__ or current.__context__)
    return found


def server_message(body: object, reason: object) -> str:
    """The server's own message from an error answer's body: its JSON `error` or `message`, else the text."""
    raw = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body or "")
    try:
        parsed = json.loads(raw)
    except ValueError:
        return shown(raw.strip()) or str(reason or "")
    if isinstance(parsed, dict):
        for key in ("error", "message"):
            if isinstance(parsed.get(key), str) and parsed[key]:
                return shown(parsed[key])
    return shown(raw.strip())


def masked(error: ClusterError, auth: Auth) -> ClusterError:
    """The error with the credential's value (as sent, or echoed by a server) replaced by ***."""
    message = str(error)
    secrets = [v for v in (auth.token, auth.cookie) if v]
    if auth.cookie and "=" in auth.cookie:
        secrets.append(auth.cookie.split("=", 1)[1])
    for secret in sorted(secrets, key=len, reverse=True):
        if len(secret) >= 4:  # shorter, masking would hide the address and nothing a guess would not find
            for form in (secret, shown(secret), urllib.parse.quote(secret, safe="")):
                message = message.replace(form, "***")
    return ClusterError(message) if message != str(error) else error


def refused(
    what: str, host: str, auth: Auth, namespace: str | None, status: int, message: str, location: object
) -> ClusterError:
    """An HTTP error answer to `what`, with the likely fix for its status."""
    head = f"could not {what} on {host}: HTTP {status}"
    if status == 401:
        return ClusterError(
            f"{head} (not authenticated; sent {auth.label}): {message}; "
            "give a valid token with --token-env or a session cookie with --cookie-env"
        )
    if status == 403:
        return ClusterError(
            f"{head} (forbidden; sent {auth.label}): {message}; that identity may not "
            f"do this{' in namespace ' + repr(namespace) if namespace else ''}: "
            "ask for access, or pass --namespace of a profile you belong to"
        )
    if status in (301, 302, 303, 307, 308):
        return ClusterError(
            f"{head} redirect to {shown(str(location))}, not followed (it would carry {auth.label}); "
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


def transport(what: str, host: str, exc: urllib3.exceptions.HTTPError) -> ClusterError:
    """A call to `what` that got no HTTP answer: TLS, a timeout, or no connection."""
    found = causes(exc)
    tries = getattr(exc, "tries", None)
    after = f" after {tries} tries" if tries and tries > 1 else ""
    for cause in found:
        if isinstance(cause, (ssl.SSLError, urllib3.exceptions.SSLError)):
            return ClusterError(
                f"could not {what} on {host}: TLS failed{after} ({shown(str(cause))}); "
                "a cluster behind a private CA needs --ca-cert PATH (verification stays on)"
            )
    for cause in found:
        # urllib3's NewConnectionError (refused, no route) subclasses ConnectTimeoutError: ask it first.
        if isinstance(cause, urllib3.exceptions.NewConnectionError):
            break
        if isinstance(
            cause, (urllib3.exceptions.ReadTimeoutError, urllib3.exceptions.ConnectTimeoutError, TimeoutError)
        ):
            return ClusterError(
                f"could not {what} on {host}: no answer in time{after}; is the port-forward or ingress up?"
            )
    last = found[-1]
    return ClusterError(
        f"could not {what} on {host}: unreachable{after} ({last.__class__.__name__}: "
        f"{shown(str(last))}); is the port-forward or ingress up, and --host right?"
    )
