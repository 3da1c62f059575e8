"""realm-tf: REALM pre-training (Guu et al., 2020) on TensorFlow 2 and Keras 2.

Importing the package selects Keras 2 (`tf_keras`) for TensorFlow: tf-models-official
and `hub.KerasLayer` need it, so it must happen before TensorFlow is first imported.
"""
import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
