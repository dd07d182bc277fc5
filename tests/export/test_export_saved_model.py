"""Exports load the way TF-Serving loads them: the `serve` MetaGraph in a v1 Session."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from lmn_tf.data import schema
from lmn_tf.data.random_batches import random_arrays
from lmn_tf.data.raw import RAW_FEATURES
from lmn_tf.data.vocabulary import Vocabulary
from lmn_tf.export import export_saved_model, signature
from lmn_tf.export.serving_values import find_stores
from lmn_tf.export.versions import existing_versions, next_version
from lmn_tf.export.warmup import WARMUP_FILE, read_warmup
from lmn_tf.models import build_model

VOCAB = schema.Vocab(30, 40, 3, 8, 22, 100, 19, 10)
TINY = dict(embedding_dim=4, hidden_units=(8,), attention_units=(8,), num_keys=8, top_k=4,
            value_dim=8)
SAVED_MODEL_CLI = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")


def trained_lmn(seed: int = 0, **hparams) -> tf.keras.Model:
    """A tiny LMN after one epoch of Adam, so optimizer slots exist and must stay out."""
    tf.keras.utils.set_random_seed(seed)
    model = build_model("lmn", VOCAB, **TINY, **hparams)
    model.compile(tf.keras.optimizers.Adam(0.01))
    data = tf.data.Dataset.from_tensor_slices(random_arrays(VOCAB, 64, seed=seed)).batch(32)
    model.fit(data, epochs=1, verbose=0)
    return model


@pytest.fixture(scope="module")
def model():
    return trained_lmn()


@pytest.fixture(scope="module")
def features():
    arrays = random_arrays(VOCAB, 16, seed=1)
    arrays.pop(schema.LABEL)
    return arrays


@pytest.fixture(scope="module")
def exported(model, features, tmp_path_factory):
    return export_saved_model(model, str(tmp_path_factory.mktemp("models")), "lmn",
                              warmup=features)


IDENTITY = Vocabulary.identity(VOCAB)  # the default export vocabulary: id k is "k"


def run_session(path: str, features: dict, signature_name: str = "serving_indices"
                ) -> tuple[dict, tf.compat.v1.MetaGraphDef]:
    """Loads `serve` like TF-Serving and runs a signature by its tensor names."""
    with tf.Graph().as_default(), tf.compat.v1.Session() as sess:
        meta = tf.compat.v1.saved_model.loader.load(sess, ["serve"], path)
        sig = meta.signature_def[signature_name]
        feeds = {sig.inputs[k].name: features[k] for k in sig.inputs}
        out = sess.run({k: t.name for k, t in sig.outputs.items()}, feeds)
    return out, meta


def reference(model, features) -> np.ndarray:
    return tf.sigmoid(model.predict(features, verbose=0)[:, 0]).numpy()


def test_session_predictions_equal_model_predict(model, features, exported):
    out, _ = run_session(exported, features)
    np.testing.assert_allclose(out["probability"], reference(model, features), atol=1e-5)
    np.testing.assert_allclose(out["logit"], model.predict(features, verbose=0)[:, 0], atol=1e-5)
    assert out["probability"].shape == (16,) and out["probability"].dtype == np.float32


def test_group_routed_lmn_exports_its_trained_centroids(features, tmp_path):
    # query_user="group": the k-means centroids are non-trainable weights the export must hold
    model = trained_lmn(query_user="group", user_groups=4)
    assert model.group_router.assigned.numpy().sum() == 64  # one epoch moved them
    path = export_saved_model(model, str(tmp_path), "lmn")
    out, _ = run_session(path, features)
    np.testing.assert_allclose(out["probability"], reference(model, features), atol=1e-5)


def test_default_lmn_exports_both_stores(model, exported):
    # the default query_user=("profile", "group"): two value tables and the router's centroids
    assert [m.name for m in model.memories] == ["memory", "memory_group"]
    # the export swaps every store it finds: the two tables, nothing the router holds
    assert [owner.name for owner, _, _ in find_stores(model)] == ["memory", "memory_group"]
    _, meta = run_session(exported, random_arrays(VOCAB, 2))
    names = graph_variable_names(meta)
    assert {m.value_variables[0].name[:-2] for m in model.memories} <= names
    assert model.group_router.centroids.name[:-2] in names


def test_raw_session_predictions_equal_model_predict(model, features, exported):
    raw = IDENTITY.to_raw(features)
    out, _ = run_session(exported, raw, "serving_default")
    np.testing.assert_allclose(out["probability"], reference(model, features), atol=1e-5)
    indices, _ = run_session(exported, features)
    np.testing.assert_array_equal(out["logit"], indices["logit"])  # the same graph below


@pytest.mark.parametrize("name,spec", [("serving_default", RAW_FEATURES),
                                       ("serving_indices", schema.FEATURES)])
def test_signature_inputs_and_outputs(exported, name, spec):
    _, meta = run_session(exported, random_arrays(VOCAB, 2))
    assert set(meta.signature_def) == {"serving_default", "serving_indices",
                                       "__saved_model_init_op"}
    sig = meta.signature_def[name]
    assert sig.method_name == "tensorflow/serving/predict"
    assert set(sig.inputs) == set(spec)
    for feature, (dtype, shape) in spec.items():
        info = sig.inputs[feature]
        assert info.dtype == tf.as_dtype(dtype).as_datatype_enum, feature
        assert [d.size for d in info.tensor_shape.dim] == [-1, *shape], feature
    assert set(sig.outputs) == {"logit", "probability"}
    for info in sig.outputs.values():
        assert info.dtype == tf.float32.as_datatype_enum
        assert [d.size for d in info.tensor_shape.dim] == [-1]


def test_vocabularies_are_assets(exported):
    assets = sorted(os.listdir(os.path.join(exported, "assets")))
    assert assets == sorted(f"vocab_{t}.tsv" for t in IDENTITY.tables())
    with open(os.path.join(exported, "assets", "vocab_items.tsv")) as f:
        lines = f.read().splitlines()
    assert lines[:2] == ["1\t1", "2\t2"] and len(lines) == VOCAB.num_items - 1


def saved_variables(path: str) -> dict[str, tf.DType]:
    reader = tf.train.load_checkpoint(os.path.join(path, "variables", "variables"))
    return {k: v for k, v in reader.get_variable_to_dtype_map().items()
            if k != "_CHECKPOINTABLE_OBJECT_GRAPH"}


def graph_variable_names(meta) -> set[str]:
    # String variables hold the vocabulary assets' paths (TF2 saves every Asset that way).
    return {n.attr["shared_name"].s.decode() for n in meta.graph_def.node
            if n.op == "VarHandleOp" and n.attr["dtype"].type != tf.string.as_datatype_enum}


def test_only_serving_variables_are_saved(model, exported):
    _, meta = run_session(exported, random_arrays(VOCAB, 2))
    names = graph_variable_names(meta)
    assert any("optimizer" in v.name or "Adam" in v.name for v in model.optimizer.variables())
    assert not any("Adam" in n or "optimizer" in n or "iter" in n for n in names), names
    assert not any("optimizer" in k or "Adam" in k for k in saved_variables(exported))
    model_vars = {v.name.split(":")[0] for v in model.variables}
    # The two stores' query MLPs share variable names; the graph uniquifies them ("_1").
    names = {re.sub(r"_\d+$", "", n) if re.sub(r"_\d+$", "", n) in model_vars else n
             for n in names}
    assert names <= model_vars  # no metric accumulators, no slots: only model weights
    memory = model.memory
    assert {memory.value_variables[0].name[:-2], memory.row_keys.name[:-2]} <= names
    assert not any("true_positives" in n for n in names)  # the AUC metric's state


def function_nodes(meta) -> set[tuple[str, str]]:
    """(op type, node name) of the MetaGraph and of every function in its library."""
    nodes = {(n.op, n.name) for n in meta.graph_def.node}
    for f in meta.graph_def.library.function:
        nodes |= {(n.op, n.name) for n in f.node_def}
    return nodes


def function_ops(meta) -> set[str]:
    return {op for op, _ in function_nodes(meta)}


def test_graph_is_lookup_only(exported):
    _, meta = run_session(exported, random_arrays(VOCAB, 2))
    nodes = function_nodes(meta)
    assert {"TopKV2", "ResourceGather", "Sigmoid"} <= {op for op, _ in nodes}
    # LMNLayer computes SmoothL1(M_O, M_Q) (tf.abs in its `memory` scope) and updates its
    # `memory_loss` metric in every mode; neither may survive, nor any optimizer update.
    assert not [n for op, n in nodes if op == "Abs" and "memory" in n]
    assert not [n for op, n in nodes if "memory_loss" in n]
    assert not {op for op, _ in nodes} & {"AssignAddVariableOp", "AssignSubVariableOp",
                                          "ResourceApplyAdam", "ResourceSparseApplyAdagradV2"}


def test_add_loss_ops_are_pruned(tmp_path):
    # Base's L2 penalty is computed even at inference; its Square must not reach the export.
    model = build_model("base", VOCAB, embedding_dim=4, hidden_units=(8,), l2=0.1)
    model(random_arrays(VOCAB, 2))
    traced = tf.function(lambda f: model(f, training=False)).get_concrete_function(
        signature.input_specs())
    assert "Square" in {op.type for op in traced.graph.get_operations()}
    _, meta = run_session(export_saved_model(model, str(tmp_path), "base"),
                          random_arrays(VOCAB, 2))
    assert "Square" not in function_ops(meta)


def test_saved_model_cli_show_and_run(model, exported):
    show = subprocess.run([SAVED_MODEL_CLI, "show", "--all", "--dir", exported],
                          capture_output=True, text=True, timeout=120)
    assert show.returncode == 0, show.stderr
    assert "signature_def['serving_default']" in show.stdout
    assert "signature_def['serving_indices']" in show.stdout
    assert "outputs['probability']" in show.stdout and "inputs['hist_item_ids']" in show.stdout
    assert "dtype: DT_STRING" in show.stdout
    one = random_arrays(VOCAB, 1, seed=3)
    raw = IDENTITY.to_raw(one)
    exprs = ";".join(f"{k}={raw[k].tolist()}" for k in RAW_FEATURES)  # literals only
    run = subprocess.run([SAVED_MODEL_CLI, "run", "--dir", exported, "--tag_set", "serve",
                          "--signature_def", "serving_default", "--input_exprs", exprs],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    expected = reference(model, {k: one[k] for k in schema.FEATURES})[0]
    line = run.stdout.split("Result for output key probability:")[1].split("]")[0]
    assert abs(float(line.strip(" \n[")) - expected) < 1e-5, run.stdout


def test_warmup_parses_as_prediction_logs(exported, features):
    logs = read_warmup(os.path.join(exported, WARMUP_FILE))
    assert 1 < len(logs) <= 1000
    names = [log.predict_log.request.model_spec.signature_name for log in logs]
    assert names == ["serving_default"] * (len(logs) - 1) + ["serving_indices"]
    for log in logs:
        request = log.predict_log.request
        assert request.model_spec.name == "lmn"
        spec = RAW_FEATURES if request.model_spec.signature_name == "serving_default" else (
            schema.FEATURES)
        assert set(request.inputs) == set(spec)
    for log, name in ((logs[-2], "serving_default"), (logs[-1], "serving_indices")):
        batch = {k: tf.make_ndarray(t) for k, t in log.predict_log.request.inputs.items()}
        if name == "serving_default":
            assert batch["hist_item_ids"].dtype == object
            np.testing.assert_array_equal(IDENTITY.to_indices(batch)["hist_item_ids"],
                                          features["hist_item_ids"])
        out, _ = run_session(exported, batch, name)  # replayable, as TF-Serving does at load
        assert out["probability"].shape == (16,)


def test_versions_count_up_and_never_overwrite(model, tmp_path):
    base = str(tmp_path)
    os.makedirs(os.path.join(base, "lmn", "7"))
    os.makedirs(os.path.join(base, "lmn", "notes"))  # not a version
    assert next_version(os.path.join(base, "lmn")) == 8
    path = export_saved_model(model, base, "lmn")
    assert path == os.path.join(base, "lmn", "8")
    with pytest.raises(FileExistsError):
        export_saved_model(model, base, "lmn", version=8)
    with pytest.raises(ValueError, match="values_dtype"):
        export_saved_model(model, base, "lmn", values_dtype="int8")


def test_failed_export_leaves_no_version(model, tmp_path, monkeypatch):
    import lmn_tf.export.saved_model as saved_model

    def broken(*args, **kwargs):  # the SavedModel is on disk; the warm-up write dies
        raise OSError("disk full")

    monkeypatch.setattr(saved_model, "write_warmup", broken)
    with pytest.raises(OSError, match="disk full"):
        export_saved_model(model, str(tmp_path), "lmn")
    assert os.listdir(tmp_path / "lmn") == []  # no version, no temporary directory


KILLED_EXPORT = """
import os, signal, sys
import lmn_tf
import lmn_tf.export.saved_model as saved_model
from lmn_tf.models import build_model
from lmn_tf.data.random_batches import random_features
from lmn_tf.data import schema

def die(*args, **kwargs):  # SIGKILL mid-export: no cleanup code runs
    os.kill(os.getpid(), signal.SIGKILL)

saved_model.write_warmup = die
model = build_model("base", schema.Vocab(30, 40, 3, 8, 22, 100, 19, 10), embedding_dim=4)
model(random_features(model.vocab, 2))
saved_model.export_saved_model(model, sys.argv[1], "lmn")
"""


def test_killed_export_leaves_no_version(tmp_path):
    proc = subprocess.run([sys.executable, "-c", KILLED_EXPORT, str(tmp_path)],
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == -9, proc.stderr[-2000:]
    left = os.listdir(tmp_path / "lmn")
    assert existing_versions(str(tmp_path / "lmn")) == []
    assert len(left) == 1 and left[0].startswith(".tmp-")  # servers skip non-integer names
    assert os.path.exists(tmp_path / "lmn" / left[0] / "saved_model.pb")  # it was mid-way


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_low_precision_values(model, features, exported, tmp_path, dtype):
    path = export_saved_model(model, str(tmp_path), "lmn", values_dtype=dtype)
    stored = saved_variables(path)
    values_keys = [k for k in stored if ".Svalues" in k]  # one table per store
    assert len(values_keys) == len(model.memories) == 2
    assert all(stored[k] == tf.as_dtype(dtype) for k in values_keys)
    assert all(d == tf.float32 for k, d in stored.items() if k not in values_keys)
    out, _ = run_session(path, features)
    full, _ = run_session(exported, features)
    np.testing.assert_allclose(out["probability"], full["probability"], atol=5e-3)
    assert out["probability"].dtype == np.float32
    assert not np.array_equal(out["logit"], full["logit"])  # the table really changed


def test_warmup_beyond_the_vocabulary_is_refused(model, tmp_path):
    bad = {k: v for k, v in random_arrays(VOCAB, 4).items() if k != schema.LABEL}
    bad["item_id"] = bad["item_id"] + 1000  # TF-Serving would fail this version's warm-up
    with pytest.raises(ValueError, match="warm-up"):
        export_saved_model(model, str(tmp_path), "lmn", warmup=bad)
    assert os.listdir(tmp_path) == []


def test_unbuilt_model_is_refused(tmp_path):
    with pytest.raises(ValueError, match="no variables"):
        export_saved_model(build_model("lmn", VOCAB, **TINY), str(tmp_path), "lmn")
    assert not os.path.exists(tmp_path / "lmn")


def test_export_holds_stock_ops_only(model, features, exported, tmp_path):
    # In process the layer selects with the C++ kernel (when built); stock TF-Serving cannot
    # load it, so the default export traces the stock ops. custom_ops=True keeps the kernel.
    from lmn_tf.memory.ops import selection

    stock = set(dir(tf.raw_ops))  # every op TensorFlow itself registers a wrapper for
    _, meta = run_session(exported, features)
    calls = {f.signature.name for f in meta.graph_def.library.function}  # function calls
    assert function_ops(meta) - calls <= stock, function_ops(meta) - calls - stock
    assert selection.OP_NAME not in stock
    if selection.kernel_available():
        path = export_saved_model(model, str(tmp_path), "lmn", warmup=features,
                                  custom_ops=True)
        _, meta = run_session(path, features)
        assert selection.OP_NAME in function_ops(meta)
