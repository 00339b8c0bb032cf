"""How library code reports what it is doing: callbacks that the CLI renders (library code never prints)."""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[str], None]  # one line about the work in hand (a build step, a pushed layer)
Events = Callable[[str, str], None]  # (the image or step it is about, one line)
