"""Static image pairs with DIFT: semantic and geometric matching, and edit propagation.

Follows the DIFT authors' evaluation code and edit-propagation notebook
(docs/static-pairs.md has the conventions).

    from vidprop.tasks.match import PairMatcher
    m = PairMatcher.from_pretrained(config="semantic")          # DIFT, SPair-71k settings
    res = m.match_semantic(src, tgt, [(120, 80)], category="cat")
    res.target_points                                           # (N, 2) pixel coordinates in tgt

    g = PairMatcher.from_pretrained(config="geometric")         # DIFT, HPatches settings
    res = g.match_geometric(src, tgt)                           # SIFT keypoints, mutual NN, LMEDS
    res.homography, res.inliers

    out = m.edit(src, tgt, sticker_rgba)                        # EditResult.image: the edited target
                                                                # (DIFT's notebook: 1,000 points, RANSAC 5 px)

Images are (H, W, 3) uint8 RGB arrays at their ORIGINAL size; points are
pixel coordinates (x right, y down).  The matching functions of this package also work
on feature maps directly (any backbone), which is how the tests check them
against known answers.

Semantic matching computes exactly the spec's quantity -- features
upsampled bilinearly (align_corners=False) to the full image size, the source
feature taken at the integer point, cosine with every target pixel, argmax --
without materialising the full-resolution target features: the target is
upsampled a band of rows at a time (separable bilinear weights, the same
formula as ``F.interpolate``), normalised per pixel and scored against all
queries at once, keeping a running maximum.

The package's layers: the matching maths (:mod:`~vidprop.tasks.match.semantic`,
:mod:`~vidprop.tasks.match.geometric`, :mod:`~vidprop.tasks.match.edits`),
what they return (:mod:`~vidprop.tasks.match.results`) and the matcher object
that runs a backbone on images (:mod:`~vidprop.tasks.match.matcher`).
"""

from vidprop.tasks.match.edits import (
    composite_warped,
    edit_matches,
    propagate_edit_features,
    region_points,
    sticker_layer,
)
from vidprop.tasks.match.geometric import (
    detect_sift,
    fit_homography,
    geometric_match_features,
    mutual_nearest,
    sample_descriptors,
)
from vidprop.tasks.match.matcher import MIN_SIDE, PairMatcher, image_index, prompt_for
from vidprop.tasks.match.results import EditResult, MatchResult
from vidprop.tasks.match.semantic import (
    DEFAULT_CHUNK_BYTES,
    bilinear_weights,
    sample_upsampled,
    semantic_argmax,
    upsample_rows,
)

__all__ = [
    "MatchResult",
    "EditResult",
    "PairMatcher",
    "bilinear_weights",
    "upsample_rows",
    "sample_upsampled",
    "semantic_argmax",
    "sample_descriptors",
    "mutual_nearest",
    "fit_homography",
    "detect_sift",
    "geometric_match_features",
    "sticker_layer",
    "region_points",
    "edit_matches",
    "composite_warped",
    "propagate_edit_features",
    "prompt_for",
    "image_index",
    "MIN_SIDE",
    "DEFAULT_CHUNK_BYTES",
]
