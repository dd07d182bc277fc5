"""TF-Serving export: a lookup-only SavedModel per version, written atomically.

``export_saved_model(model, base_path, model_name)`` writes ``BASE/NAME/VERSION/`` with a
``serving_default`` signature over the dense ``schema.FEATURES`` inputs and the outputs
``probability`` and ``logit`` (both (B,) float32), plus TF-Serving warm-up requests. The
signature is documented in the repository's ``export/README.md``.
"""

from lmn_tf.export.saved_model import VALUES_DTYPES, export_saved_model

__all__ = ["VALUES_DTYPES", "export_saved_model"]
