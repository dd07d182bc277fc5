"""Raw features -> the model's indices, inside the SavedModel: the vocabularies as assets.

`RawInputs(vocabulary)` holds one ``tf.lookup.StaticHashTable`` per vocabulary table,
initialised from a ``raw<TAB>index`` text file that ``tf.saved_model.save`` copies into the
export's ``assets/`` (``vocab_users.tsv``, ``vocab_items.tsv``, ...). Calling it on
`lmn_tf.data.raw.RAW_FEATURES` tensors returns `lmn_tf.data.schema.FEATURES` tensors by the
rules of `lmn_tf.data.vocabulary` (whose ``to_indices`` is the NumPy reference): a value
missing from a table gets the table's default, index 0, the unknown / padding row, so an id
never seen in training is scored like any other request, never refused. Only stock ops
(``HashTableV2``, ``LookupTableFindV2``, ``Bucketize``, string ops), so stock TF-Serving and
the v1 Session loader run it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import tensorflow as tf

from lmn_tf.data.movielens import AGE_GROUPS
from lmn_tf.data.raw import PADDING, RAW_FEATURES
from lmn_tf.data.schema import NUM_RATINGS, RATINGS_OF
from lmn_tf.data.vocabulary import TABLE_OF, ZIP_PREFIX, Vocabulary


def write_tables(vocabulary: Vocabulary, directory: str) -> dict[str, str]:
    """One ``raw<TAB>index`` file per table (listed entries only); table -> path."""
    paths = {}
    for table, values in vocabulary.tables().items():
        path = os.path.join(directory, f"vocab_{table}.tsv")
        with open(path, "w", encoding="utf-8") as f:
            for k, v in enumerate(values):
                if k > 0 and v not in (PADDING, 0):
                    f.write(f"{v}\t{k}\n")
        paths[table] = path
    return paths


class RawInputs(tf.Module):
    """The raw -> index mapping of the export's ``serving_default`` signature.

    Args:
        vocabulary: the raw value of every index (`lmn_tf.data.vocabulary.Vocabulary`),
            normally restricted to the training period.
        directory: where the table files are written; they must exist until the SavedModel
            is saved (``tf.saved_model.save`` copies them into ``assets/``).

    Example:
    >>> import tempfile
    >>> import numpy as np
    >>> from lmn_tf.data.schema import Vocab
    >>> from lmn_tf.data.random_batches import random_arrays
    >>> voc = Vocabulary.identity(Vocab(10, 20, 3, 8, 22, 100, 19, 10))
    >>> raw = voc.to_raw(random_arrays(Vocab(10, 20, 3, 8, 22, 100, 19, 10), 2))
    >>> raw["item_id"] = np.array(["7", "a movie never seen"], dtype=object)
    >>> RawInputs(voc, tempfile.mkdtemp())(raw)["item_id"].numpy()
    array([7, 0], dtype=int32)
    """

    def __init__(self, vocabulary: Vocabulary, directory: str):
        super().__init__(name="raw_inputs")
        self.tables = {}
        for table, path in write_tables(vocabulary, directory).items():
            key_dtype = tf.int64 if table == "decades" else tf.string
            init = tf.lookup.TextFileInitializer(
                path, key_dtype, 0, tf.int64, 1, delimiter="\t")
            self.tables[table] = tf.lookup.StaticHashTable(init, default_value=0)

    def _lookup(self, table: str, keys: tf.Tensor) -> tf.Tensor:
        return tf.cast(self.tables[table].lookup(keys), tf.int32)

    def __call__(self, raw: Mapping[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        """`RAW_FEATURES` tensors -> `schema.FEATURES` tensors (same names, same shapes)."""
        out = {}
        for name, (dtype, _) in RAW_FEATURES.items():
            x = tf.convert_to_tensor(raw[name], dtype)
            table = TABLE_OF.get(name)
            if table == "zips":
                x = tf.strings.substr(tf.strings.strip(x), 0, ZIP_PREFIX)
            elif table == "decades":  # year -> decade; a year <= 0 is unknown (key 0)
                year = tf.cast(x, tf.int64)
                x = tf.where(year > 0, year // 10, tf.zeros_like(year))
            if table is not None:
                out[name] = self._lookup(table, x)
            elif name == "user_age":
                bucket = tf.raw_ops.Bucketize(input=x, boundaries=[float(a) for a in
                                                                   AGE_GROUPS[1:]])
                out[name] = tf.where(x > 0, 1 + bucket, tf.zeros_like(bucket))
            else:
                out[name] = x
        for seq, side in RATINGS_OF.items():
            r = out[side]
            ok = (out[seq] != 0) & (r >= 1) & (r < NUM_RATINGS)
            out[side] = tf.where(ok, r, tf.zeros_like(r))  # padding, unknown id or bad rating
        return out
