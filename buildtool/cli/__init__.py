"""The `buildtool` command: parses arguments, renders progress, maps errors to exit codes.

Only this package prints, and only `main` exits; everything it calls raises BuildtoolError subclasses.
Importing it loads no engine, HTTP, kfp or multipart library: each command imports the modules that
reach those inside its function, so `--help` and the offline commands start fast and a missing
optional piece breaks only the command using it. `parser.py` assembles the commands, each group of
them in a `commands_*.py` module with its options.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from ..errors import BuildtoolError
from .parser import parser

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    # urllib3 warns of every retried connection with its objects' reprs; the registry client logs each retry
    # itself, and a failure is one error line: the warnings show with -v only.
    logging.getLogger("urllib3.connectionpool").setLevel(logging.DEBUG if args.verbose else logging.ERROR)
    command: Callable[[argparse.Namespace], int] = args.func
    try:
        return command(args)
    except BuildtoolError as exc:
        print(f"buildtool: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:  # a signal outside the commands that handle it themselves
        print("buildtool: error: interrupted (SIGINT)", file=sys.stderr)
        return 130
    except Exception as exc:  # a failure no module anticipated: one line, the traceback only with -v
        if args.verbose:
            raise
        print(
            f"buildtool: error: unexpected {exc.__class__.__name__}: {exc} (run with -v for the traceback)",
            file=sys.stderr,
        )
        return 1
