"""Overlap the steps of a run: reading and interpolating the next tiles, and writing the last ones,
in worker threads while the network runs on the current one.

A GPU runs the network many times faster than the processor reads, interpolates and writes a tile;
done one after the other, those steps leave the GPU idle most of the time. Reading (GDAL), the
interpolation's matrix products (numpy) and block compression (GDAL) release the GIL, so one thread
for each side is enough. Each side holds at most ``depth`` tiles, so memory stays bounded, and the
order of the tiles, and so the output, is unchanged. An error in a worker thread is raised in the
caller's thread at the next item, and an error in the caller stops the workers before it propagates.

Two promises hold the files safe. A worker always stops before the caller goes on, even when Ctrl+C
comes again while the caller waits for it (the interrupt is raised once the worker has stopped), so
a file is never closed or deleted while a worker still reads or writes it. And a worker runs under
the caller's GDAL configuration: ``rasterio.Env`` applies to the thread that entered it (from any
thread but the main one, such as QGIS's task threads), so without it a worker would read and write
without the caller's options (credentials and HTTP settings of ``/vsis3/`` or ``/vsicurl/``...).
"""

from __future__ import annotations

import contextlib
import queue
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import AbstractContextManager
from typing import Any, TypeVar

T = TypeVar("T")

_DONE = object()

#: How often (seconds) a waiting worker looks whether the caller has stopped it.
_POLL_SECONDS = 0.05


def ahead(items: Iterable[T], depth: int = 2) -> Iterator[T]:
    """Yield the items of ``items``, which a worker thread produces up to ``depth`` items ahead.

    At most ``depth`` items are made and not yet taken, the one the worker is making included: the
    worker starts on the next item only when there is room for it.
    """
    if depth < 1:
        raise ValueError(f"depth must be at least 1, got {depth}")
    slots: queue.SimpleQueue[Any] = queue.SimpleQueue()  # bounded by ``room``: depth items, then the end
    room = threading.Semaphore(depth)
    stop, finished = threading.Event(), threading.Event()
    context = caller_context()

    def produce() -> None:
        try:
            with context():
                iterator = iter(items)
                while True:
                    while not room.acquire(timeout=_POLL_SECONDS):
                        if stop.is_set():
                            return
                    if stop.is_set():
                        return
                    item = next(iterator, _DONE)
                    slots.put((item, None))
                    if item is _DONE:
                        return
        except BaseException as error:  # noqa: BLE001 - handed to the caller's thread
            slots.put((_DONE, error))
        finally:
            finished.set()

    worker = threading.Thread(target=produce, name="geosr-ahead", daemon=True)
    worker.start()
    try:
        while True:
            item, error = slots.get()
            if error is not None:
                raise error
            if item is _DONE:
                return
            room.release()
            yield item
    finally:
        stop.set()
        # an Event, not join alone: a join that Ctrl+C interrupts takes the thread for stopped (CPython 3.11)
        wait_through_interrupts(finished.wait)
        wait_through_interrupts(worker.join)


class Behind:
    """Run calls in order in one worker thread, at most ``depth`` of them pending.

    ``submit`` waits while ``depth`` calls are pending and raises the error of any that failed;
    leaving the ``with`` block waits for the rest (or, when the block raised, drops those not
    started and waits for the one running) and raises the first error. The calls run under the
    GDAL configuration of the thread that made the ``Behind``.
    """

    def __init__(self, depth: int = 1) -> None:
        if depth < 1:
            raise ValueError(f"depth must be at least 1, got {depth}")
        self.depth = depth
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="geosr-behind")
        self._pending: list[Future[Any]] = []
        self._context = caller_context()

    def __enter__(self) -> Behind:
        return self

    def submit(self, call: Callable[..., Any], *args: Any) -> None:
        self._settle(self.depth - 1)
        self._pending.append(self._pool.submit(self._run, call, args))

    def _run(self, call: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        with self._context():
            return call(*args)

    def _settle(self, keep: int) -> None:
        while len(self._pending) > keep:
            wait([self._pending[0]])  # interrupted, the call stays pending: __exit__ waits for it
            self._pending.pop(0).result()

    def _shutdown(self) -> None:
        # the calls themselves are waited for, not the thread: a join that Ctrl+C interrupts takes the
        # thread for stopped (CPython 3.11), and a second one returns at once
        self._pool.shutdown(wait=False, cancel_futures=True)
        # not the calls cancelled before they started: concurrent.futures.wait never counts a future that
        # cancel() stopped in the queue as done (only once a worker would have taken it), and would hang
        started = [future for future in self._pending if not future.cancelled()]
        wait_through_interrupts(lambda: wait(started))
        wait_through_interrupts(lambda: self._pool.shutdown(wait=True))

    def __exit__(self, kind: Any, error: Any, trace: Any) -> None:
        if kind is None:
            try:
                self._settle(0)
            finally:
                self._shutdown()
        else:
            self._shutdown()
            self._pending.clear()


def wait_through_interrupts(until: Callable[[], Any]) -> None:
    """Call ``until`` (a wait for a worker) until it returns, even through Ctrl+C; then raise the interrupt.

    A second Ctrl+C while an interrupted run waits for its worker would otherwise leave the worker
    reading or writing a file that the run, unwinding, closes and deletes under it.
    """
    interrupted: BaseException | None = None
    while True:
        try:
            until()
        except BaseException as error:  # noqa: BLE001 - KeyboardInterrupt, or a signal handler's error
            interrupted = interrupted or error
        else:
            break
    if interrupted is not None:
        raise interrupted


def caller_context() -> Callable[[], AbstractContextManager[Any]]:
    """What a worker thread enters to run under the calling thread's GDAL configuration (its
    ``rasterio.Env`` options); nothing to enter where the caller has none or rasterio is not loaded."""
    env = sys.modules.get("rasterio.env")
    if env is None or not env.hasenv():
        return contextlib.nullcontext
    options = env.getenv()

    @contextlib.contextmanager
    def gdal_options() -> Iterator[None]:
        # set as rasterio restores a parent's options: Env(**options) refuses the AWS credentials
        # that a session (rasterio.Env(session=...)) puts among them
        with env.Env():
            env.setenv(**options)
            yield

    return gdal_options


__all__ = ["Behind", "ahead", "caller_context", "wait_through_interrupts"]
