"""One loaded model version: the ``serve`` MetaGraph in a TF1 Session, run by signature.

This is the path TF-Serving's C++ ``SavedModelBundle`` loader takes: import the MetaGraph
tagged ``serve`` into a fresh graph, restore the variables, then answer each Predict with one
``Session::Run`` feeding the signature's input tensors by name and fetching its outputs. It
works for any SavedModel (TF1 builders, ``tf.saved_model.save``, Keras ``export``) without
Python objects, and ``Session.run`` is thread-safe, so concurrent requests share one Session.
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import threading
import time
from collections.abc import Mapping, Sequence

import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2

from lmn_tf.serving.errors import ServingError, invalid_argument

log = logging.getLogger("lmn_tf.serving")

DEFAULT_SIGNATURE = "serving_default"
WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")
MAX_WARMUP_RECORDS = 1000  # TF-Serving's kMaxNumRecords
_METHODS = (
    "tensorflow/serving/predict",
    "tensorflow/serving/classify",
    "tensorflow/serving/regress",
)


def _tf_dtype(array: np.ndarray) -> tf.DType | None:
    if array.dtype.kind in "OSU":
        return tf.string
    try:
        return tf.dtypes.as_dtype(array.dtype)
    except TypeError:
        return None


class Servable:
    """A SavedModel version loaded for serving.

    Args:
        name: the model name.
        version: the version number (the directory name).
        path: the SavedModel directory, ``BASE/NAME/VERSION``.
        session_config: optional ``tf.compat.v1.ConfigProto`` (thread pools).

    Raises:
        Exception: whatever the loader raises for a broken SavedModel.

    Example:
        >>> s = Servable("lmn", 1, "/models/lmn/1")  # doctest: +SKIP
        >>> s.run("serving_default", {"x": np.ones((2, 3), np.float32)})  # doctest: +SKIP
    """

    def __init__(self, name: str, version: int, path: str, session_config=None):
        self.name, self.version, self.path = name, version, path
        self._graph = tf.Graph()
        self._session = tf.compat.v1.Session(graph=self._graph, config=session_config)
        try:
            with self._graph.as_default():
                meta_graph = tf.compat.v1.saved_model.loader.load(self._session, ["serve"], path)
        except BaseException:
            self._session.close()
            raise
        self._graph.finalize()  # requests must never grow the graph
        self.signature_defs = dict(meta_graph.signature_def)
        self.batcher = None  # set by the manager when server-side batching is on
        self._inflight = 0
        self._idle = threading.Condition()

    # -- requests --------------------------------------------------------------------------

    def signature(self, name: str) -> tf.compat.v1.SignatureDef:
        name = name or DEFAULT_SIGNATURE
        if name not in self.signature_defs:
            # predict_util.cc: FailedPrecondition (HTTP 400).
            raise ServingError(
                grpc.StatusCode.FAILED_PRECONDITION, f'Serving signature key "{name}" not found.'
            )
        return self.signature_defs[name]

    def check_request(
        self, signature_name: str, inputs: Mapping[str, np.ndarray], output_filter: Sequence[str]
    ) -> None:
        """TF-Serving's PreProcessPrediction: input names, dtypes and output aliases."""
        sig = self.signature(signature_name)
        if sig.method_name not in _METHODS:  # e.g. __saved_model_init_op
            # TF-Serving's predict_util.cc says INTERNAL; the request is what is wrong here,
            # and a client's choice must never look like a server fault
            raise invalid_argument(
                "Expected prediction signature method_name to be one of {"
                f"{', '.join(_METHODS)}}}. Was: {sig.method_name}",
            )
        sent, wanted = set(inputs), set(sig.inputs)
        if sent != wanted:
            raise invalid_argument(
                f"input size does not match signature: {len(sent)}!={len(wanted)} "
                f"len({{{','.join(sorted(sent))}}}) != len({{{','.join(sorted(wanted))}}}). "
                f"Sent extra: {{{','.join(sorted(sent - wanted))}}}. "
                f"Missing but required: {{{','.join(sorted(wanted - sent))}}}."
            )
        for i, key in enumerate(sorted(inputs)):
            want = tf.dtypes.as_dtype(sig.inputs[key].dtype)
            got = _tf_dtype(inputs[key])
            if got != want:
                # Session::Run's message; the Python Session would silently cast instead.
                raise invalid_argument(
                    f"Expects arg[{i}] to be {want.name} but "
                    f"{getattr(got, 'name', got)} is provided"
                    f" (input {key!r})"
                )
        seen = set()
        for alias in output_filter:
            if alias not in sig.outputs:
                raise invalid_argument(
                    f"output tensor alias not found in signature: {alias} Outputs expected to "
                    f"be in the set {{{','.join(sorted(sig.outputs))}}}."
                )
            if alias in seen:
                raise invalid_argument(f"duplicate output tensor alias: {alias}")
            seen.add(alias)

    def run(
        self,
        signature_name: str,
        inputs: Mapping[str, np.ndarray],
        output_filter: Sequence[str] = (),
    ) -> dict[str, np.ndarray]:
        """One Session.run of a signature (after ``check_request``); outputs by alias."""
        sig = self.signature(signature_name)
        aliases = list(output_filter) or sorted(sig.outputs)
        feed = {sig.inputs[k].name: v for k, v in inputs.items()}
        try:
            values = self._session.run([sig.outputs[a].name for a in aliases], feed_dict=feed)
        except tf.errors.OpError as e:
            raise ServingError.from_int(e.error_code, e.message) from None
        except (ValueError, TypeError) as e:  # the Python feed checks: shape, conversion
            raise invalid_argument(str(e)) from None
        return dict(zip(aliases, values, strict=True))

    def predict(
        self,
        signature_name: str,
        inputs: Mapping[str, np.ndarray],
        output_filter: Sequence[str] = (),
    ) -> dict[str, np.ndarray]:
        """Validates and runs a request, through the batcher when batching is on."""
        return self.predict_future(signature_name, inputs, output_filter).result()

    def predict_future(
        self,
        signature_name: str,
        inputs: Mapping[str, np.ndarray],
        output_filter: Sequence[str] = (),
    ) -> concurrent.futures.Future:
        """Validates a request; returns its outputs' future.

        Without batching the request runs here and the future is done on return; with
        batching it is queued and the future completes when its batch has run, so the caller
        need not hold a thread while it waits.
        """
        self.check_request(signature_name, inputs, output_filter)
        if self.batcher is not None:
            name = signature_name or DEFAULT_SIGNATURE
            return self.batcher.submit_future(name, inputs, output_filter)
        future = concurrent.futures.Future()
        try:
            future.set_result(self.run(signature_name, inputs, output_filter))
        except ServingError as e:
            future.set_exception(e)
        return future

    # -- life cycle ------------------------------------------------------------------------

    def warmup(self) -> int:
        """Replays ``assets.extra/tf_serving_warmup_requests`` (PredictionLog TFRecords).

        Any failing record fails the load, as in TF-Serving. Returns the number replayed.
        """
        path = os.path.join(self.path, WARMUP_FILE)
        if not tf.io.gfile.exists(path):
            return 0
        start, count = time.monotonic(), 0
        for record in tf.data.TFRecordDataset(path).as_numpy_iterator():
            count += 1
            if count > MAX_WARMUP_RECORDS:
                raise invalid_argument(
                    f"Number of warmup records exceeds the maximum ({MAX_WARMUP_RECORDS}) at {path}"
                )
            entry = prediction_log_pb2.PredictionLog.FromString(record)
            kind = entry.WhichOneof("log_type")
            if kind != "predict_log":
                # Classify/Regress/MultiInference are not served here; the real server runs them.
                log.warning("warm-up record %d of %s is %s; skipped", count, path, kind)
                continue
            request = entry.predict_log.request
            inputs = {k: tf.make_ndarray(v) for k, v in request.inputs.items()}
            self.predict(request.model_spec.signature_name, inputs, list(request.output_filter))
        log.info(
            "Finished reading warmup data for model at %s. Number of warmup records read: %d. "
            "Elapsed time (microseconds): %d.",
            path,
            count,
            (time.monotonic() - start) * 1e6,
        )
        return count

    def acquire(self) -> None:
        with self._idle:
            self._inflight += 1

    def release(self) -> None:
        with self._idle:
            self._inflight -= 1
            if self._inflight == 0:
                self._idle.notify_all()

    def unload(self) -> None:
        """Waits for in-flight requests (callers can no longer acquire), then frees it."""
        with self._idle:
            self._idle.wait_for(lambda: self._inflight == 0)
        if self.batcher is not None:
            self.batcher.stop()
        self._session.close()
