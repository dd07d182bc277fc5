"""What to serve and how: TF-Serving's ``--model_config_file`` and ``--batching_parameters_file``.

Both files are the text protos the real ``tensorflow_model_server`` reads, so one
``serving/models.config`` and one ``serving/batching.config`` drive both servers.
``ModelServerConfig`` ships with ``tensorflow-serving-api``; ``BatchingParameters`` does not,
so its few scalar fields are parsed here.
"""

from __future__ import annotations

import dataclasses
import os
import re

from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """One model: a name and a base path holding numbered version directories.

    Args:
        name: the model name clients put in the URL / ``model_spec.name``.
        base_path: the directory holding ``1/``, ``2/``, ... (SavedModels).
        policy: ``"latest"`` (the newest ``num_versions``), ``"all"``, or ``"specific"``.
        num_versions: for ``"latest"``.
        versions: for ``"specific"``.
        labels: version labels (``{"stable": 1}``) for ``/labels/L`` and ``version_label``.
    """

    name: str
    base_path: str
    policy: str = "latest"
    num_versions: int = 1
    versions: tuple[int, ...] = ()
    labels: dict[str, int] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if self.policy not in ("latest", "all", "specific"):
            raise ValueError(
                f"policy must be latest, all or specific. Received: policy={self.policy}"
            )
        if self.num_versions < 1:
            raise ValueError(
                f"num_versions must be >= 1. Received: num_versions={self.num_versions}"
            )

    def select(self, on_disk: list[int]) -> set[int]:
        """The aspired versions among those on disk."""
        if self.policy == "all":
            return set(on_disk)
        if self.policy == "specific":
            return set(on_disk) & set(self.versions)
        return set(sorted(on_disk)[-self.num_versions :])


def load_model_config_file(path: str) -> list[ModelConfig]:
    """Parses a ``ModelServerConfig`` text proto (``model_config_list { config { ... } }``)."""
    with open(path) as f:
        proto = text_format.Parse(f.read(), model_server_config_pb2.ModelServerConfig())
    configs = []
    for c in proto.model_config_list.config:
        if c.model_platform not in ("", "tensorflow"):
            raise ValueError(
                f"only model_platform tensorflow is served. Received: {c.model_platform}"
            )
        kind = c.model_version_policy.WhichOneof("policy_choice") or "latest"
        base_path = c.base_path
        if not os.path.isabs(base_path):  # relative paths: relative to the config file
            base_path = os.path.join(os.path.dirname(os.path.abspath(path)), base_path)
        configs.append(
            ModelConfig(
                name=c.name,
                base_path=base_path,
                policy=kind,
                num_versions=c.model_version_policy.latest.num_versions or 1,
                versions=tuple(c.model_version_policy.specific.versions),
                labels=dict(c.version_labels),
            )
        )
    names = [c.name for c in configs]
    if len(set(names)) != len(names) or not all(names):
        raise ValueError(f"model names must be unique and non-empty. Received: {names}")
    return configs


@dataclasses.dataclass(frozen=True)
class BatchingConfig:
    """Server-side batching, the fields of TF-Serving's ``BatchingParameters`` used here.

    Args:
        max_batch_size: largest merged batch (rows); a single request above it is refused,
            as TF-Serving does without large-batch splitting.
        batch_timeout_micros: how long the first request of a batch waits for company.
        max_enqueued_batches: queue bound; beyond it requests get UNAVAILABLE.
        num_batch_threads: batches run concurrently.
        allowed_batch_sizes: if set, batches are padded up to the next allowed size
            (by repeating the last row) and the padding is cut from the outputs.
    """

    max_batch_size: int = 32
    batch_timeout_micros: int = 1000
    max_enqueued_batches: int = 100
    num_batch_threads: int = 2
    allowed_batch_sizes: tuple[int, ...] = ()

    def __post_init__(self):
        for field in ("max_batch_size", "max_enqueued_batches", "num_batch_threads"):
            if getattr(self, field) < 1:
                raise ValueError(f"{field} must be >= 1. Received: {field}={getattr(self, field)}")
        if self.batch_timeout_micros < 0:
            raise ValueError(
                f"batch_timeout_micros must be >= 0. Received: {self.batch_timeout_micros}"
            )
        sizes = self.allowed_batch_sizes
        if sizes and (list(sizes) != sorted(sizes) or sizes[-1] != self.max_batch_size):
            raise ValueError(
                "allowed_batch_sizes must increase and end at max_batch_size. Received: "
                f"allowed_batch_sizes={list(sizes)}, max_batch_size={self.max_batch_size}"
            )


_SCALAR = re.compile(r"(\w+)\s*\{\s*value\s*:\s*(\d+)\s*\}")
_REPEATED = re.compile(r"(allowed_batch_sizes)\s*:\s*(\d+)")


def load_batching_parameters(path: str) -> BatchingConfig:
    """Parses a ``BatchingParameters`` text proto (``max_batch_size { value: 128 }``)."""
    with open(path) as f:
        text = re.sub(r"#.*", "", f.read())
    known = {f.name for f in dataclasses.fields(BatchingConfig)}
    values: dict = {}
    for key, value in _SCALAR.findall(text):
        if key in known:
            values[key] = int(value)
        # other fields (pad_variable_length_inputs, ...) are the real server's business
    sizes = tuple(int(v) for _, v in _REPEATED.findall(text))
    if sizes:
        values["allowed_batch_sizes"] = sizes
    return BatchingConfig(**values)
