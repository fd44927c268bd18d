"""Raw interaction data -> TFRecords, item tables and text features."""

import os

# TFRS needs Keras 2 (tf-keras); this must happen before TensorFlow is first imported.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
