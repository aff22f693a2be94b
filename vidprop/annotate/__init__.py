"""Interactive labelling: annotate any frame (mask, clicks, box), propagate from cached features, correct, export.

``Annotator`` is the Python API (``vidprop annotate`` serves a page over it);
see ``docs/annotate.md``.
"""

from vidprop.annotate.annotator import Annotator
from vidprop.annotate.confidence import FrameConfidence, frame_confidence

__all__ = ["Annotator", "FrameConfidence", "frame_confidence"]
