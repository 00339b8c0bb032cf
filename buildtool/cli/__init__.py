"""The `buildtool` command: parses arguments, renders progress, maps errors to exit codes.

Only this package prints, and only `run` (the console script) exits; what it calls raises BuildtoolError.
Importing it loads no engine, HTTP, kfp or multipart library: each command imports the modules that
reach those inside its function, so `--help` and the offline commands start fast and a missing
optional piece breaks only the command using it. `parser.py` assembles the commands, each group of
them in a `commands_*.py` module with its options.
"""

from __future__ import annotations

import argparse
import atexit
import logging
import os
import sys
import threading
from collections.abc import Callable, Sequence
from typing import NoReturn

from .. import ssh_transport
from ..errors import BuildtoolError
from .parser import parser

__all__ = ["main", "run"]


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


def run() -> NoReturn:
    """The console script: `main`, then an exit that skips the interpreter's teardown.

    Tearing down the ~600 modules a build loads takes about 60 ms, a tenth of a small build; by the time
    `main` returns every file buildtool writes is closed and in place. The exit handlers still run (logging's
    flush, temporary folders); a thread still working gets the ordinary exit, which waits for it."""
    ssh_transport.skip_unless_needed(os.environ)
    code = main()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: what was lost is lost either way
            pass
    if any(t is not threading.main_thread() and not t.daemon for t in threading.enumerate()):
        sys.exit(code)
    atexit._run_exitfuncs()
    os._exit(code)
