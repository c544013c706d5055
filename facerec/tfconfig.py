"""TensorFlow set-up shared by the inference services: quiet logs and pinned thread pools."""

from __future__ import annotations

import os


def quiet_tensorflow() -> None:
    """Silences TensorFlow's C++ start-up chatter; call before the first `import tensorflow`."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def pin_threads(intra_op: int, inter_op: int) -> None:
    """Pins TensorFlow's thread pools. Must run before TensorFlow executes anything; later calls are no-ops."""
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(intra_op)
        tf.config.threading.set_inter_op_parallelism_threads(inter_op)
    except RuntimeError:
        pass  # the runtime is already initialized in this process; its pools stay as they are
