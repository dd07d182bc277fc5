"""lmn-tf for Keras 3 users (``import keras``, Keras-RS): ``LMNLayer`` and ``MemoryAdam``.

``lmn_tf.LMNLayer`` is a tf-keras (Keras 2) layer, as TensorFlow Recommenders needs; this
module's ``LMNLayer`` is its Keras 3 twin over the same math (``lmn_tf.memory.core``), on the
TensorFlow, JAX and PyTorch backends. ``pip install "lmn-tf[keras3]"`` adds Keras-RS and JAX.

    import keras
    from lmn_tf.keras3 import LMNLayer, MemoryAdam

    items, user = keras.Input((50, 32)), keras.Input((16,))
    model = keras.Model([items, user], LMNLayer(num_keys=32, top_k=8)(items, user))
    model.compile(optimizer=MemoryAdam(1e-3), loss="mse")
"""

from lmn_tf.memory.keras3 import LMNLayer
from lmn_tf.memory.keras3_optimizer import MemoryAdam

__all__ = ["LMNLayer", "MemoryAdam"]
