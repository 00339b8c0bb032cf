"""Stopping a run on SIGINT/SIGTERM: the signal reaches the work, not only the main thread.

A `Token` is shared by everything a run starts. Work that can block for long
(a skopeo process, the engine's push stream, a check container) registers a
stopper with the token; the signal handler sets the token and calls every
stopper, so each blocked call returns at once with an error, and the main
thread raises `Interrupted`. Writes that publish something (a content tag, the
map) happen inside `token.publishing()`, which refuses once the token is set;
the handler waits for a write already in flight, so none starts after it.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType

from .errors import Interrupted

log = logging.getLogger(__name__)

Stopper = Callable[[], None]
SIGNALS = (signal.SIGINT, signal.SIGTERM)  # what stops a run: Ctrl-C, and what CI sends on cancel
_PUBLISH_WAIT = 1.0  # seconds the handler waits for a registry write already in flight


class Token:
    """Set once, on a signal (or by a test); carries the stoppers of what is running."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._signum = 0
        self._stoppers: dict[int, Stopper] = {}
        self._next = 0
        self._lock = threading.Lock()
        self._publish = threading.Lock()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def raise_if_cancelled(self) -> None:
        if self._event.is_set():
            raise Interrupted(self._signum or signal.SIGINT)

    def pause(self, seconds: float) -> None:
        """Wait `seconds`, or until cancelled (then Interrupted)."""
        self._event.wait(seconds)
        self.raise_if_cancelled()

    @contextlib.contextmanager
    def stopping(self, stopper: Stopper) -> Iterator[None]:
        """Within the block, a cancel calls `stopper` (which must make the blocked call return)."""
        with self._lock:
            key = self._next
            self._next += 1
            self._stoppers[key] = stopper
            already = self._event.is_set()
        try:
            if already:
                stopper()
                self.raise_if_cancelled()
            yield
        finally:
            with self._lock:
                self._stoppers.pop(key, None)

    @contextlib.contextmanager
    def publishing(self) -> Iterator[None]:
        """A write that makes something visible: refused once cancelled; a cancel waits for it to end."""
        with self._publish:
            self.raise_if_cancelled()
            yield

    def child(self) -> Token:
        """A token cancelled with this one, and cancellable alone (one image's push when its check fails)."""
        child = Token()
        with self._lock:
            key = self._next
            self._next += 1
            self._stoppers[key] = lambda: child.cancel(self._signum or signal.SIGINT)
            already = self._event.is_set()
        if already:
            child.cancel(self._signum or signal.SIGINT)
        return child

    def cancel(self, signum: int = signal.SIGINT) -> None:
        """Set the token and stop everything registered; idempotent."""
        acquired = self._publish.acquire(timeout=_PUBLISH_WAIT)
        try:
            with self._lock:
                if not self._event.is_set():
                    self._signum = signum
                self._event.set()
                stoppers = list(self._stoppers.values())
        finally:
            if acquired:
                self._publish.release()
        for stop in stoppers:
            try:
                stop()
            except Exception as exc:  # one stopper failing must not keep the others from running
                log.debug("stopping after a signal: %s: %s", exc.__class__.__name__, exc)


@contextlib.contextmanager
def on_signals(token: Token) -> Iterator[Token]:
    """Within the block, SIGINT and SIGTERM cancel `token` and raise Interrupted in the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield token
        return

    def handler(signum: int, _frame: FrameType | None) -> None:
        if token.cancelled:
            return  # a second signal: the run is already stopping, within the same bounded wait
        token.cancel(signum)
        raise Interrupted(signum)

    previous = {s: signal.signal(s, handler) for s in SIGNALS}
    try:
        yield token
    finally:
        for s, old in previous.items():
            signal.signal(s, old)
