"""A tiny CUB_200_2011 release for the tests: the text files of the real one, PNG images painted with labels."""

from __future__ import annotations

from pathlib import Path

from tests.eval.label_matcher import paint


def write_release(folder: Path, images: list[dict]) -> Path:
    """Write ``folder/CUB_200_2011``.  Each image: ``cls`` (class id), ``train`` (0/1), ``size`` (w, h),
    ``box`` (x, y, w, h), ``kps`` [(x, y, visible)] per part and ``d`` per part: how far above the truth
    its label's first pixel is painted (so a label matcher's error there)."""
    root = folder / "CUB_200_2011"
    lines: dict[str, list[str]] = {"images.txt": [], "train_test_split.txt": [], "image_class_labels.txt": [],
                                   "bounding_boxes.txt": [], "parts/part_locs.txt": []}
    for i, im in enumerate(images, start=1):
        name = f"{im['cls']:03d}.Class_{im['cls']}/img_{i:02d}.png"
        lines["images.txt"].append(f"{i} {name}")
        lines["train_test_split.txt"].append(f"{i} {im['train']}")
        lines["image_class_labels.txt"].append(f"{i} {im['cls']}")
        lines["bounding_boxes.txt"].append(f"{i} " + " ".join(f"{v:.1f}" for v in im["box"]))
        spots = {}
        for part, ((x, y, vis), d) in enumerate(zip(im["kps"], im["d"]), start=1):
            lines["parts/part_locs.txt"].append(f"{i} {part} {x:.1f} {y:.1f} {vis}")
            if vis:
                spots[part] = [(x, y - d), (x, y)]
        paint(root / "images" / name, im["size"], spots)
    for rel, rows in lines.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("\n".join(rows) + "\n")
    return root
