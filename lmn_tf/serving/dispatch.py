"""Request work off the event loop: a few worker threads, and batches awaited, not waited on.

Both front ends run on one asyncio loop that only moves bytes (HTTP framing, gRPC frames).
Each request's CPU work (decoding JSON or TensorProtos, ``Session.run``, encoding the
answer) runs on a pool of worker threads sized to the cores, so the number of concurrent
``Session.run`` calls and Python decoders is bounded by the machine, not by the number of
connections (a thread per connection let 64 clients thrash two cores). With server-side
batching the loop awaits the batch's future, so a full batch needs no thread per waiting
request; a small request (``INLINE_BYTES``) is then decoded and encoded on the loop itself,
a larger one by a worker.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import numpy as np
from tensorflow_serving.apis import model_pb2

from lmn_tf.serving import protocol
from lmn_tf.serving.admission import Admission
from lmn_tf.serving.manager import ServerCore
from lmn_tf.serving.servable import DEFAULT_SIGNATURE, Servable
from lmn_tf.serving.threads import name_this_thread

T = TypeVar("T")


@dataclasses.dataclass
class Decoded:
    """A request turned into arrays; ``context`` is whatever the encoder needs back."""

    signature_name: str
    inputs: Mapping[str, np.ndarray]
    output_filter: Sequence[str] = ()
    context: Any = None


Encode = Callable[[model_pb2.ModelSpec, dict[str, np.ndarray], Any], T]


# Bodies up to this size are parsed on the event loop when the model batches (a 1-row
# MovieLens request is about 3 KB as JSON; parsing it takes well under a millisecond).
INLINE_BYTES = 16 << 10


@dataclasses.dataclass
class _Pending:
    future: concurrent.futures.Future
    spec: model_pb2.ModelSpec
    context: Any


class Dispatcher:
    """The worker pool and the per-model admission both front ends share.

    Args:
        core: the models.
        workers: worker threads.
        max_inflight: requests admitted per model at once (``Admission``); <= 0: no limit.
    """

    def __init__(self, core: ServerCore, workers: int, max_inflight: int):
        self.core = core
        self.admission = Admission(max_inflight)
        self.executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=workers,
            thread_name_prefix="worker",
            initializer=name_this_thread,
            initargs=("lmn-worker",),
        )

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` on a worker thread."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    async def predict(
        self,
        spec: model_pb2.ModelSpec,
        decode: Callable[[Servable], Decoded],
        encode: Encode[T],
        request_bytes: int | None = None,
    ) -> T:
        """One Predict: the batch awaited on the loop, ``decode``/``encode`` where cheapest.

        ``decode(servable)`` gets the version that will answer (so a roll-over between
        parsing and running cannot mix two versions' signatures); ``encode(spec, outputs,
        context)`` gets the response ModelSpec with the version filled in.

        A batched request of at most ``INLINE_BYTES`` (``request_bytes``, the body's size;
        None: unknown, so a worker) is decoded and encoded on the event loop itself: parsing
        a small body costs less than
        the two hand-offs to a worker and back, and under load those hand-offs (a wake-up
        write and a GIL hand-over each) were what bounded requests/s. Without batching the
        model runs inside ``decode``, so that always goes to a worker.
        """
        version, label = protocol.spec_version(spec)
        with self.core.servable(spec.name, version, label) as servable:
            inline = (request_bytes is not None and request_bytes <= INLINE_BYTES
                      and servable.batcher is not None)

            def start() -> T | _Pending:
                request = decode(servable)
                future = servable.predict_future(
                    request.signature_name, request.inputs, request.output_filter
                )
                out_spec = model_pb2.ModelSpec(
                    name=spec.name, signature_name=request.signature_name or DEFAULT_SIGNATURE
                )
                out_spec.version.value = servable.version
                if future.done():  # no batching: finish on this worker, no second hop
                    return encode(out_spec, future.result(), request.context)
                return _Pending(future, out_spec, request.context)

            result = start() if inline else await self.call(start)
            if isinstance(result, _Pending):
                outputs = await asyncio.wrap_future(result.future)
                result = (encode(result.spec, outputs, result.context) if inline else
                          await self.call(encode, result.spec, outputs, result.context))
            return result

    def shutdown(self) -> None:
        self.executor.shutdown(wait=True)
