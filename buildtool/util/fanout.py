"""Calls that wait on the network, made side by side: the registry reads of every image at once.

Daemon threads, not a ThreadPoolExecutor: its `with` (and the interpreter's exit) waits for running calls, so
after Ctrl-C a slow read would hold the process until its timeout. Here the main thread waits in a join that a
signal interrupts, and an abandoned read ends with the process.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

WORKERS = 8  # a registry serves a few connections per client well; the pool keeps this many alive


def each(items: Sequence[T], call: Callable[[T], R], workers: int = WORKERS) -> list[R]:
    """`call(item)` for every item, up to `workers` at once; the results in the items' order.

    When calls fail, the failure of the first failing item in that order is raised once every call has ended:
    the error a loop over the items would have raised.
    """
    results: dict[int, R] = {}
    errors: dict[int, BaseException] = {}
    lock = threading.Lock()
    remaining = iter(range(len(items)))

    def work() -> None:
        while True:
            with lock:
                index = next(remaining, None)
            if index is None:
                return
            try:
                results[index] = call(items[index])
            except BaseException as exc:  # handed to the caller's thread, in the items' order
                errors[index] = exc

    if len(items) <= 1:  # nothing to overlap: no thread
        work()
    else:
        threads = [threading.Thread(target=work, daemon=True) for _ in range(min(workers, len(items)))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    if errors:
        raise errors[min(errors)]
    return [results[index] for index in range(len(items))]
