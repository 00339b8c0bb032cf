"""Options that several commands take, declared once."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TypeAlias

# What ArgumentParser.add_subparsers returns (argparse names its class privately).
Subcommands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def add_pipeline_argument(command: argparse.ArgumentParser) -> None:
    command.add_argument("pipeline", nargs="?", help="compiled workflow (default: [tool.buildtool] output)")


def add_param_option(command: argparse.ArgumentParser, help: str) -> None:
    command.add_argument("--param", "-p", action="append", default=[], metavar="NAME=VALUE", help=help)


def add_hidden_base_image(command: argparse.ArgumentParser) -> None:
    """--base-image on commands that load the configuration: accepted, not shown (BUILDTOOL_BASE_IMAGE is the way)."""
    command.add_argument("--base-image", help=argparse.SUPPRESS)


def add_command(
    sub: Subcommands, name: str, run: Callable[[argparse.Namespace], int], help: str, description: str | None = None
) -> argparse.ArgumentParser:
    """A subcommand that `main` carries out with `run`."""
    command = sub.add_parser(name, help=help, description=description)
    command.set_defaults(func=run)
    return command
