"""A local server that speaks the training platform's HTTP API, for development and tests.

Files live on disk as ``<data>/<file_type>/<uid>``, accuracies as
``<data>/model_metadata/<uid>.json``. Accounts are access key -> secret key.
Login answers ``{"token": ...}``; every other call needs
``Authorization: Bearer <token>``, and a token expires after `token_ttl` seconds.

It ships with buildtool and may face a hostile network, so it fails closed:

- credentials are checked before a body is read: an unauthenticated request
  costs its headers and nothing more, and a login body is at most 64 KiB;
- each request has a deadline for its request line and headers (a JSON body
  shares it), an upload's body or a download's answer one that grows only with
  the bytes moved (`body_timeout` plus one second per `min_body_rate` bytes),
  and every read or write a timeout, so a half-sent or trickled request ends;
- a framing error (a duplicate or malformed Content-Length, a
  Transfer-Encoding) closes the connection: the rest of the bytes are never
  read as another request;
- at most `workers` connections are served at once; the next ones get a 503 at
  once and are closed, so no thread or memory grows with the number of clients;
- an upload goes through a streaming multipart parser into a temporary file
  beside its destination, renamed once complete: never held in memory;
- every malformed request gets a 4xx naming what is wrong, never a 500.

One module per concept:

- `storage`: where files and accuracies are kept, uids, seeding a dataset;
- `accounts`: the accounts file (read with the strict YAML reader);
- `tokens`: login tokens and their expiry;
- `workers`: the HTTP server's bounded pool of workers;
- `handler`: the four calls, and the deadlines and framing of a request;
- `forms`: JSON and multipart/form-data bodies;
- `server`: `PlatformServer` (start, stop, serve) and `serve_forever`.
"""

from .. import DEFAULT_TOKEN_TTL, DEFAULT_WORKERS
from .accounts import ensure_accounts_file, load_accounts
from .handler import ACCURACY_PATH, LOGIN_PATH
from .server import PlatformServer, serve_forever
from .storage import FILE_KINDS, METADATA_DIR, is_valid_uid, seed_dataset, seed_generated_dataset, stored_path

__all__ = [
    "ACCURACY_PATH",
    "DEFAULT_TOKEN_TTL",
    "DEFAULT_WORKERS",
    "FILE_KINDS",
    "LOGIN_PATH",
    "METADATA_DIR",
    "PlatformServer",
    "ensure_accounts_file",
    "is_valid_uid",
    "load_accounts",
    "seed_dataset",
    "seed_generated_dataset",
    "serve_forever",
    "stored_path",
]
