"""Save the DIFT features of still images and videos, with the settings that made them.

Python API (``vidprop extract`` is a thin layer over it):

    from vidprop.tasks.extract import FeatureSaver, SaveOptions, extract_images, extract_video

    saver = FeatureSaver.from_pretrained(config="dift")        # DIFT's script defaults: 768x768, t 261, block 1
    extract_images(["cat.jpg", "dog.png"], "feats/", saver=saver)
    # -> feats/cat.pt (a (C, h, w) float32 tensor, as DIFT's extract_dift.py saves) + feats/cat.json (settings)

    saver = FeatureSaver.from_pretrained(config="davis-fast")  # the video settings of `vidprop segment`
    extract_video("clip.mp4", "feats/", saver=saver, options=SaveOptions(chunk=16))
    # -> feats/clip/chunk_00000.safetensors ... ((16, C, h, w) each) + feats/clip/index.json

    from vidprop.features import load_features
    feats, settings = load_features("feats/cat.pt")

Still images: each image alone (its noise drawn for frame index 0, so its
features do not depend on the other images), resized with PIL bicubic like
DIFT's script, batched ``batch_size`` at a time when their model sizes agree.
Videos: frames streamed through the video driver
(:class:`~vidprop.io.driver.VideoDriver`), resized with OpenCV bilinear and
seeded by frame index exactly as ``vidprop segment`` does (the saved features
are the ones segmentation uses), written a chunk at a time, so memory does
not grow with the video's length.

Re-running the same extraction skips every file already complete (same
settings and source, intact); a truncated or unfinished file is redone; a
file made with other settings is an error unless ``overwrite``.  File
formats: ``docs/extract.md``.

The package's layers: :mod:`~vidprop.tasks.extract.saver` (the saver, its
options and the store writing both jobs share), the image job
(:mod:`~vidprop.tasks.extract.images`) and the video job
(:mod:`~vidprop.tasks.extract.video`).
"""

from vidprop.tasks.extract.images import classify_inputs, extract_images, plan_images
from vidprop.tasks.extract.saver import (
    FORMAT_VERSION,
    IMAGE_PRESET,
    VIDEO_PRESET,
    ExtractResult,
    FeatureSaver,
    SaveOptions,
    upsample_features,
)
from vidprop.tasks.extract.video import extract_video, source_fingerprint

__all__ = [
    "IMAGE_PRESET",
    "VIDEO_PRESET",
    "FORMAT_VERSION",
    "SaveOptions",
    "ExtractResult",
    "FeatureSaver",
    "extract_images",
    "extract_video",
    "upsample_features",
    "classify_inputs",
    "source_fingerprint",
    "plan_images",
]
