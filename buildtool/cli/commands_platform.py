"""`buildtool platform serve` and `seed`: the example's local training platform, for development and tests."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ..dev import DEFAULT_SAMPLES, DEFAULT_TOKEN_TTL, DEFAULT_WORKERS
from ..errors import PlatformError
from .options import Subcommands, add_command

if TYPE_CHECKING:
    from ..dev.platform_server import PlatformServer


def add_platform(sub: Subcommands) -> None:
    command = sub.add_parser("platform", help="the local training platform (its HTTP API), for development and tests")
    actions = command.add_subparsers(dest="platform_command", required=True, metavar="ACTION")
    serve = add_command(actions, "serve", cmd_platform_serve, "serve the platform's HTTP API until interrupted")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    serve.add_argument("--port", type=int, default=8080, help="port (default: %(default)s)")
    serve.add_argument(
        "--accounts",
        help="YAML/JSON file 'accounts: {ACCESS_KEY: SECRET_KEY}' "
        "(default: DATA/accounts.yaml, created with a random secret)",
    )
    serve.add_argument("--seed-dataset", metavar="UID", help="store a generated training dataset under UID first")
    serve.add_argument(
        "--token-ttl",
        type=float,
        default=DEFAULT_TOKEN_TTL,
        metavar="SECONDS",
        help="seconds a login token stays valid (default: %(default)s)",
    )
    serve.add_argument(
        "--workers",
        type=int,
        default=DEFAULT_WORKERS,
        help="connections served at once; more get a 503 (default: %(default)s)",
    )
    add_dataset_options(serve)
    seed = add_command(actions, "seed", cmd_platform_seed, "store a generated, learnable training dataset under a uid")
    seed.add_argument("uid", help="training dataset uid, e.g. demo-dataset")
    add_dataset_options(seed)


def add_dataset_options(command: argparse.ArgumentParser) -> None:
    command.add_argument("--data", default=".platform-data", help="folder of stored files (default: %(default)s)")
    command.add_argument(
        "--samples", type=int, default=DEFAULT_SAMPLES, help="samples in a generated dataset (default: %(default)s)"
    )
    command.add_argument(
        "--format",
        choices=("seed", "safe"),
        default="seed",
        help="dataset layout: seed is the platform's object array (read by a restricted "
        "unpickler); safe is a structured array, no pickle (default: %(default)s)",
    )


def require_platform() -> None:
    """PlatformError when the `platform` extra (the example's local platform) is not installed."""
    import importlib.util

    missing = [name for name in ("multipart", "numpy", "platform_client") if importlib.util.find_spec(name) is None]
    if missing:
        raise PlatformError(
            f"the local platform needs {', '.join(missing)}, which the toolkit does not install: "
            "install the example's `platform` extra with its client, e.g. "
            "pip install ./images/base/platform-client '.[platform]' from the example's checkout"
        )


def cmd_platform_seed(args: argparse.Namespace) -> int:
    require_platform()
    from ..dev.platform_server import ensure_accounts_file, seed_generated_dataset

    data = Path(args.data)
    stored = seed_generated_dataset(data, args.uid, samples=args.samples, format=args.format)
    print_created(*ensure_accounts_file(data))  # so `platform serve --data` finds an account
    print(f"seeded training dataset {args.uid!r} ({args.samples} samples, {args.format} format) at {stored}")
    return 0


def cmd_platform_serve(args: argparse.Namespace) -> int:
    require_platform()
    from ..dev.platform_server import ensure_accounts_file, load_accounts, seed_generated_dataset, serve_forever

    data = Path(args.data)
    accounts_path = Path(args.accounts) if args.accounts else None
    if accounts_path is None:
        accounts_path, created = ensure_accounts_file(data)
        print_created(accounts_path, created)
    accounts = load_accounts(accounts_path)
    if args.seed_dataset:
        seed_generated_dataset(data, args.seed_dataset, samples=args.samples, format=args.format)

    def ready(server: PlatformServer) -> None:
        print(f"platform API on {server.url} (data in {data}); Ctrl-C stops it", file=sys.stderr, flush=True)

    serve_forever(args.host, args.port, data, accounts, token_ttl=args.token_ttl, workers=args.workers, ready=ready)
    return 0


def print_created(path: Path, created: bool) -> None:
    if created:
        print(f"created {path} with account 'dev' (its secret key is in the file)", file=sys.stderr)
