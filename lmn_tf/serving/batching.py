"""Server-side batching: concurrent requests merged into one Session.run.

Like TF-Serving's ``BasicBatchScheduler``: requests queue per (signature, inner shapes); a
batch closes when it holds ``max_batch_size`` rows or its first request has waited
``batch_timeout_micros``; ``num_batch_threads`` batches run at once. The queue holds at
most ``max_enqueued_batches`` batches (its rows counted in batches of ``max_batch_size``,
batches already running not counted); a task that does not fit answers UNAVAILABLE at
once. Each caller gets back exactly its own rows, through a future, so a front end waits
for its batch without holding a thread.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import itertools
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence

import grpc
import numpy as np

from lmn_tf.serving.config import BatchingConfig
from lmn_tf.serving.errors import ServingError, invalid_argument
from lmn_tf.serving.threads import name_this_thread

RunFn = Callable[[str, Mapping[str, np.ndarray], Sequence[str]], dict[str, np.ndarray]]


@dataclasses.dataclass
class _Task:
    inputs: Mapping[str, np.ndarray]
    rows: int
    enqueued: float
    future: concurrent.futures.Future = dataclasses.field(
        default_factory=concurrent.futures.Future
    )


class Batcher:
    """Merges concurrent ``run`` calls of one servable.

    Args:
        run: ``run(signature_name, inputs, output_filter) -> outputs`` (one Session.run).
        config: the batching parameters.
    """

    def __init__(self, run: RunFn, config: BatchingConfig):
        self._run, self._config = run, config
        self._cond = threading.Condition()
        self._queues: dict[tuple, collections.deque[_Task]] = {}
        self._queued_rows: dict[tuple, int] = {}
        self._stopped = False
        self._threads = [
            threading.Thread(target=self._loop, name=f"batch-{i}", daemon=True)
            for i in range(config.num_batch_threads)
        ]
        for t in self._threads:
            t.start()

    def submit(
        self, signature_name: str, inputs: Mapping[str, np.ndarray], output_filter: Sequence[str]
    ) -> dict[str, np.ndarray]:
        """Runs one request in a batch; blocks until its rows are back."""
        return self.submit_future(signature_name, inputs, output_filter).result()

    def submit_future(
        self, signature_name: str, inputs: Mapping[str, np.ndarray], output_filter: Sequence[str]
    ) -> concurrent.futures.Future:
        """Queues one request; the future gets its outputs (or its error) from its batch.

        Raises:
            ServingError: INVALID_ARGUMENT for unequal or too many rows; UNAVAILABLE when
                the queue is full or the batcher is stopping.
        """
        sizes = {v.shape[0] if v.ndim else -1 for v in inputs.values()}
        if len(sizes) != 1 or -1 in sizes:
            raise invalid_argument(
                "Batching Run() input tensors must have equal 0th-dimension size"
            )
        rows = sizes.pop()
        if rows > self._config.max_batch_size:
            raise invalid_argument(
                f"Task size {rows} is larger than maximum batch size {self._config.max_batch_size}"
            )
        if rows == 0:
            future = concurrent.futures.Future()
            future.set_result(self._run(signature_name, inputs, output_filter))
            return future
        key = (
            signature_name,
            tuple(output_filter),
            tuple(sorted((k, v.dtype.str, v.shape[1:]) for k, v in inputs.items())),
        )
        task = _Task(inputs, rows, time.monotonic())
        cfg = self._config
        with self._cond:
            if self._stopped:
                raise ServingError(grpc.StatusCode.UNAVAILABLE, "Batch scheduler is shutting down")
            queued = dict(self._queued_rows)
            queued[key] = queued.get(key, 0) + rows
            if sum(math.ceil(r / cfg.max_batch_size) for r in queued.values()) > (
                cfg.max_enqueued_batches
            ):
                raise ServingError(
                    grpc.StatusCode.UNAVAILABLE,
                    "The batch scheduling queue to which this task was submitted is full",
                )
            self._queues.setdefault(key, collections.deque()).append(task)
            self._queued_rows = queued
            self._cond.notify_all()
        return task.future

    def stop(self) -> None:
        """Runs what is queued, then ends the batch threads."""
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        for t in self._threads:
            t.join()

    def _take(self) -> tuple[tuple, list[_Task]] | None:
        """Blocks until a batch is due; returns it, or None when stopped and drained."""
        timeout = self._config.batch_timeout_micros / 1e6
        limit = self._config.max_batch_size
        with self._cond:
            while True:
                pending = [k for k, q in self._queues.items() if q]
                if not pending:
                    if self._stopped:
                        return None
                    self._cond.wait()
                    continue
                key = min(pending, key=lambda k: self._queues[k][0].enqueued)
                queue = self._queues[key]
                wait = queue[0].enqueued + timeout - time.monotonic()
                if sum(t.rows for t in queue) < limit and wait > 0 and not self._stopped:
                    self._cond.wait(wait)
                    continue  # re-check: another thread may have taken this queue
                batch, rows = [], 0
                while queue and rows + queue[0].rows <= limit:
                    rows += queue[0].rows
                    batch.append(queue.popleft())
                self._queued_rows[key] -= rows
                if not self._queued_rows[key]:
                    del self._queued_rows[key], self._queues[key]  # keys come from clients
                return key, batch

    def _loop(self) -> None:
        name_this_thread("lmn-batch")
        while (due := self._take()) is not None:
            (signature_name, output_filter, _), tasks = due
            try:
                results = self._run_batch(signature_name, output_filter, tasks)
            except BaseException as e:  # every caller of the batch gets the error
                for t in tasks:
                    t.future.set_exception(e)
            else:
                for t, result in zip(tasks, results, strict=True):
                    t.future.set_result(result)

    def _run_batch(
        self, signature_name: str, output_filter: tuple, tasks: list[_Task]
    ) -> list[dict[str, np.ndarray]]:
        rows = sum(t.rows for t in tasks)
        padded = next((s for s in self._config.allowed_batch_sizes if s >= rows), rows)
        inputs = {}
        for name in tasks[0].inputs:
            merged = np.concatenate([t.inputs[name] for t in tasks])  # (rows, ...)
            if padded > rows:  # repeat the last row; the padding is cut below
                merged = np.concatenate([merged, np.repeat(merged[-1:], padded - rows, axis=0)])
            inputs[name] = merged
        outputs = self._run(signature_name, inputs, output_filter)
        for name, value in outputs.items():
            if value.ndim == 0 or value.shape[0] != padded:
                raise ServingError(
                    grpc.StatusCode.INTERNAL,
                    f"Batched output tensor's 0th dimension does not equal the sum of the 0th "
                    f"dimension sizes of the input tensors (output {name!r})",
                )
        starts = np.cumsum([0] + [t.rows for t in tasks])
        return [{k: v[a:b] for k, v in outputs.items()} for a, b in itertools.pairwise(starts)]
