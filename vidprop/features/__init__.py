"""Feature extractors (frames -> (B, C, h, w) maps and a stride) and feature files.

``load_features(path)`` reads back what ``vidprop extract`` saved: the tensor
and the settings that made it (see :mod:`vidprop.io.feature_store`).
"""

from vidprop.io.feature_store import load_features, open_video_features, save_features

__all__ = ["load_features", "open_video_features", "save_features"]
