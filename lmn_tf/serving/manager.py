"""Which versions are served: poll each base path, load aspired versions, retire old ones.

TF-Serving's ``FileSystemStoragePathSource`` + ``AspiredVersionsManager`` with the
availability-preserving policy, in small: every ``poll_seconds`` the base path is listed;
children whose names are integers are versions (anything else, e.g. the exporter's temp dir
``3.tmp-*`` renamed into place atomically, is ignored); the version policy picks the aspired
ones; a new version is loaded and warmed up completely before it becomes visible; an old
version is retired only once an aspired one is available, and freed only after its in-flight
requests finish. A version that fails to load is logged, reported in the model status, and
retried up to ``max_load_retries`` times while the old version keeps serving.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
from collections.abc import Callable, Iterator

from lmn_tf.serving.config import ModelConfig
from lmn_tf.serving.errors import ServingError, invalid_argument, not_found
from lmn_tf.serving.servable import Servable

log = logging.getLogger("lmn_tf.serving")

Loader = Callable[[str, int, str], Servable]


class VersionState:
    """A ``ModelVersionStatus``: state name plus an error code name and message."""

    __slots__ = ("error_code", "error_message", "state")

    def __init__(self, state: str, error_code: str = "OK", error_message: str = ""):
        self.state, self.error_code, self.error_message = state, error_code, error_message


class ModelVersions:
    """The versions of one configured model.

    Args:
        config: the model's name, base path, version policy and labels.
        loader: ``loader(name, version, path)`` returns a loaded, warmed-up Servable.
        max_load_retries: further attempts for a version whose load failed.
    """

    def __init__(self, config: ModelConfig, loader: Loader, max_load_retries: int = 5):
        self.config = config
        self._loader = loader
        self._max_load_retries = max_load_retries
        self._lock = threading.Lock()
        self._available: dict[int, Servable] = {}
        self._states: dict[int, VersionState] = {}
        self._failures: dict[int, int] = {}
        self._warned_empty = self._warned_unlistable = False

    def versions_on_disk(self) -> list[int] | None:
        """Integer-named directories under the base path; None if it cannot be listed."""
        try:
            names = os.listdir(self.config.base_path)
        except OSError as e:
            if not self._warned_unlistable:  # once, not every poll
                log.warning("cannot list base path %s: %s", self.config.base_path, e)
            self._warned_unlistable = True
            return None
        self._warned_unlistable = False
        path = self.config.base_path
        return sorted(
            int(n)
            for n in names
            if re.fullmatch(r"\d+", n) and os.path.isdir(os.path.join(path, n))
        )

    def poll(self) -> None:
        on_disk = self.versions_on_disk()
        if on_disk is None:
            return  # keep serving what we have; the path may be back next time
        if not on_disk and not self._available and not self._warned_empty:
            log.warning(
                "No versions of servable %s found under base path %s",
                self.config.name,
                self.config.base_path,
            )
        self._warned_empty = not on_disk
        # a version directory that disappeared may come back fixed: forget its failures
        self._failures = {v: n for v, n in self._failures.items() if v in on_disk}
        candidates = [v for v in on_disk if self._failures.get(v, 0) <= self._max_load_retries]
        aspired = self.config.select(candidates)
        for version in sorted(aspired - set(self._available), reverse=True):
            self._load(version)
        with self._lock:
            loaded = set(self._available)
            # availability-preserving: old versions go only once an aspired one serves
            old = sorted(loaded - aspired) if loaded & aspired or not aspired else []
            retire = [self._available.pop(v) for v in old]
            for s in retire:
                self._states[s.version] = VersionState("UNLOADING")
        for s in retire:
            log.info("Unloading servable version {name: %s version: %d}", s.name, s.version)
            s.unload()  # blocks until its in-flight requests are done
            self._states[s.version] = VersionState("END")

    def _load(self, version: int) -> None:
        name, path = self.config.name, os.path.join(self.config.base_path, str(version))
        self._states[version] = VersionState("LOADING")
        log.info("Loading servable version {name: %s version: %d} from %s", name, version, path)
        try:
            servable = self._loader(name, version, path)
        except Exception as e:
            self._failures[version] = self._failures.get(version, 0) + 1
            if isinstance(e, ServingError):
                code = e.code.name
            elif isinstance(getattr(e, "error_code", None), int):  # tf.errors.OpError
                code = ServingError.from_int(e.error_code, "").code.name
            else:
                code = "UNKNOWN"
            message = f"Loading servable version {{name: {name} version: {version}}} failed: {e}"
            self._states[version] = VersionState("END", code, message)
            log.error("%s (attempt %d)", message, self._failures[version])
            return
        with self._lock:
            self._available[version] = servable
            self._states[version] = VersionState("AVAILABLE")
        log.info("Successfully loaded servable version {name: %s version: %d}", name, version)

    def _resolve_label(self, label: str) -> int:
        if label not in self.config.labels:
            raise invalid_argument(f"Unrecognized servable version label: {label}")
        return self.config.labels[label]

    def acquire(self, version: int | None = None, label: str | None = None) -> Servable:
        """A servable with one more in-flight request; call ``release`` on it when done."""
        name = self.config.name
        if label:
            version = self._resolve_label(label)
        with self._lock:
            if version is None:
                if not self._available:
                    raise not_found(f"Servable not found for request: Latest({name})")
                servable = self._available[max(self._available)]
            elif version in self._available:
                servable = self._available[version]
            else:
                raise not_found(f"Servable not found for request: Specific({name}, {version})")
            servable.acquire()
        return servable

    def status(self, version: int | None = None, label: str | None = None) -> list[tuple]:
        """``(version, VersionState)`` pairs, newest first, as GetModelStatus lists them."""
        name = self.config.name
        if label:
            version = self._resolve_label(label)
        with self._lock:
            states = dict(self._states)
        if version is not None:
            if version not in states:
                raise not_found(f"Could not find version {version} of model {name}")
            return [(version, states[version])]
        if not states:
            raise not_found(f"Could not find any versions of model {name}")
        return sorted(states.items(), reverse=True)

    def unload_all(self) -> None:
        with self._lock:
            retire, self._available = list(self._available.values()), {}
        for s in retire:
            s.unload()
            self._states[s.version] = VersionState("END")


class ServerCore:
    """All configured models and the thread polling their base paths.

    Args:
        configs: the models to serve; other names are refused with NOT_FOUND.
        loader: builds a Servable for ``(name, version, path)``.
        poll_seconds: base path poll interval (TF-Serving's
            ``--file_system_poll_wait_seconds``); <= 0 loads once and never polls.
        max_load_retries: see ``ModelVersions``.
    """

    def __init__(
        self,
        configs: list[ModelConfig],
        loader: Loader,
        poll_seconds: float = 1.0,
        max_load_retries: int = 5,
    ):
        self.models = {c.name: ModelVersions(c, loader, max_load_retries) for c in configs}
        self._poll_seconds = poll_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll_loop, name="fs-poll", daemon=True)

    def start(self) -> None:
        """Loads the initial versions (blocking, as TF-Serving does), then polls."""
        for m in self.models.values():
            m.poll()
        if self._poll_seconds > 0:
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        for m in self.models.values():
            m.unload_all()

    def _poll_loop(self) -> None:
        while not self._stop.wait(self._poll_seconds):
            for m in self.models.values():
                try:
                    m.poll()
                except Exception:  # a poll must never kill the poller
                    log.exception("polling %s failed", m.config.base_path)

    def model(self, name: str, *, for_status: bool = False) -> ModelVersions:
        if name not in self.models:
            if for_status:
                raise not_found(f"Could not find any versions of model {name}")
            raise not_found(f"Servable not found for request: Latest({name})")
        return self.models[name]

    @contextlib.contextmanager
    def servable(
        self, name: str, version: int | None = None, label: str | None = None
    ) -> Iterator[Servable]:
        """The requested version, held for the duration of the ``with`` block."""
        if version is not None and label:
            raise invalid_argument(
                f"Both model version ({version}) and model version label ({label}) "
                "cannot be supplied."
            )
        servable = self.model(name).acquire(version, label)
        try:
            yield servable
        finally:
            servable.release()
