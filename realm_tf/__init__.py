"""realm-tf: REALM pre-training (Guu et al., 2020) on TensorFlow 2 and Keras 2.

Importing the package selects Keras 2 (`tf_keras`) for TensorFlow: tf-models-official
and `hub.KerasLayer` need it, so it must happen before TensorFlow is first imported.
"""
import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# oneDNN kernels for CPU ops (matmuls, einsums, softmax). TensorFlow enables them by
# default only on CPUs with AVX-512 VNNI/BF16 or AMX; on AVX2 CPUs they make the
# training steps about twice as fast and avoid a large page-fault overhead
# (docs/BENCHMARKS.md, "Profile"). Set TF_ENABLE_ONEDNN_OPTS=0 to opt out.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
