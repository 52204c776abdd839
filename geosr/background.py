"""Overlap the steps of a run: reading and interpolating the next tiles, and writing the last ones,
in worker threads while the network runs on the current one.

A GPU runs the network many times faster than the processor reads, interpolates and writes a tile;
done one after the other, those steps leave the GPU idle most of the time. Reading (GDAL), the
interpolation's matrix products (numpy) and block compression (GDAL) release the GIL, so one thread
for each side is enough. Each side holds at most ``depth`` tiles, so memory stays bounded, and the
order of the tiles, and so the output, is unchanged. An error in a worker thread is raised in the
caller's thread at the next item, and an error in the caller stops the workers before it propagates.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")

_DONE = object()


def ahead(items: Iterable[T], depth: int = 2) -> Iterator[T]:
    """Yield the items of ``items``, which a worker thread produces up to ``depth`` items ahead."""
    slots: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(entry: Any) -> bool:
        while not stop.is_set():
            try:
                slots.put(entry, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((item, None)):
                    return
            put((_DONE, None))
        except BaseException as error:  # noqa: BLE001 - handed to the caller's thread
            put((_DONE, error))

    worker = threading.Thread(target=produce, name="geosr-ahead", daemon=True)
    worker.start()
    try:
        while True:
            item, error = slots.get()
            if error is not None:
                raise error
            if item is _DONE:
                return
            yield item
    finally:
        stop.set()
        worker.join()


class Behind:
    """Run calls in order in one worker thread, at most ``depth`` of them pending.

    ``submit`` waits while ``depth`` calls are pending and raises the error of any that failed;
    leaving the ``with`` block waits for the rest (or, when the block raised, drops those not
    started) and raises the first error.
    """

    def __init__(self, depth: int = 1) -> None:
        self.depth = depth
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="geosr-behind")
        self._pending: list[Future[Any]] = []

    def __enter__(self) -> Behind:
        return self

    def submit(self, call: Callable[..., Any], *args: Any) -> None:
        self._settle(self.depth - 1)
        self._pending.append(self._pool.submit(call, *args))

    def _settle(self, keep: int) -> None:
        while len(self._pending) > keep:
            self._pending.pop(0).result()

    def __exit__(self, kind: Any, error: Any, trace: Any) -> None:
        if kind is None:
            try:
                self._settle(0)
            finally:
                self._pool.shutdown(wait=True, cancel_futures=True)
        else:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pending.clear()


__all__ = ["Behind", "ahead"]
