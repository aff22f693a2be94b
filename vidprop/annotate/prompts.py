"""Click-to-mask: an object's mask from clicks and/or a box, with SAM 2 through transformers' ``Sam2Model``.

    from vidprop.annotate.prompts import ClickToMask
    sam = ClickToMask.load("facebook/sam2.1-hiera-small")           # a Hub id or a local folder
    mask = sam(image, points=[(120, 80)], labels=[1])               # (H, W) bool
    mask = sam(image, box=(40, 30, 200, 170))

The input is prepared as ``Sam2Processor`` prepares it (read from the
checkpoint's ``preprocessor_config.json``: resize to its ``size``, bilinear;
rescale; ImageNet mean/std; points and box scaled to that size) and the
low-resolution mask logits are resized bilinearly to the image and
thresholded at 0, as ``Sam2Processor.post_process_masks`` does.  This is done
here in torch so that torchvision (which transformers' SAM 2 image processor
imports, and which would replace vidprop's pinned torch) is not needed.  The
image embedding of the last frame is kept, so further clicks on the same
frame run only the prompt encoder and mask decoder.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from vidprop.errors import InputError, ModelLoadError

__all__ = ["DEFAULT_PROMPT_MODEL", "ClickToMask", "check_prompt", "parse_points", "parse_box"]

log = logging.getLogger(__name__)

#: The default click-to-mask checkpoint (SAM 2.1, small: interactive on a CPU).
DEFAULT_PROMPT_MODEL = "facebook/sam2.1-hiera-small"
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


# --------------------------------------------------------------------------- parsing and checks
def _frame_and_numbers(text: str, flag: str) -> tuple[str | None, list[float]]:
    frame, sep, rest = text.partition(":")
    if not sep:
        frame, rest = None, text
    try:
        nums = [float(v) for v in rest.split(",") if v.strip()]
    except ValueError:
        raise InputError(f"{flag} {text!r}: expected numbers separated by commas") from None
    if frame is not None and not re.fullmatch(r"[\w.-]+", frame.strip()):
        raise InputError(f"{flag} {text!r}: the part before ':' must name a frame")
    return (frame.strip() if frame is not None else None), nums


def parse_points(text: str, flag: str = "--points") -> tuple[str | None, list[tuple[float, float]]]:
    """``[FRAME:]X,Y[,X,Y...]`` -> (frame reference or None, [(x, y), ...])."""
    frame, nums = _frame_and_numbers(text, flag)
    if not nums or len(nums) % 2:
        raise InputError(f"{flag} {text!r}: expected [FRAME:]X,Y[,X,Y...] (pairs of pixel coordinates)")
    return frame, [(nums[i], nums[i + 1]) for i in range(0, len(nums), 2)]


def parse_box(text: str, flag: str = "--box") -> tuple[str | None, tuple[float, float, float, float]]:
    """``[FRAME:]X0,Y0,X1,Y1`` -> (frame reference or None, (x0, y0, x1, y1))."""
    frame, nums = _frame_and_numbers(text, flag)
    if len(nums) != 4:
        raise InputError(f"{flag} {text!r}: expected [FRAME:]X0,Y0,X1,Y1")
    return frame, (nums[0], nums[1], nums[2], nums[3])


def check_prompt(points: Sequence[Sequence[float]] | None, labels: Sequence[int] | None,
                 box: Sequence[float] | None, size: tuple[int, int], *, where: str = "the frame"
                 ) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """Check clicks and box against a frame of ``size`` = (W, H); return them as arrays (or None).

    Raises InputError (one line) for a click outside the frame, labels that
    do not match the clicks or are not 0/1, a box with x1 <= x0 or y1 <= y0
    or outside the frame, or no prompt at all.
    """
    w, h = size
    pts = labs = bx = None
    if points is not None and len(points):
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        if not np.isfinite(pts).all():
            raise InputError(f"{where}: click coordinates must be finite numbers")
        for x, y in pts:
            if not (0 <= x < w and 0 <= y < h):
                raise InputError(f"{where}: the click ({x:g}, {y:g}) is outside the {w}x{h} frame")
        labs = np.ones(len(pts), np.int64) if labels is None else np.asarray(labels, dtype=np.int64).reshape(-1)
        if len(labs) != len(pts):
            raise InputError(f"{where}: {len(pts)} click(s) but {len(labs)} label(s)")
        if not np.isin(labs, (0, 1)).all():
            raise InputError(f"{where}: click labels are 1 (on the object) or 0 (not on it)")
    if box is not None:
        bx = np.asarray(box, dtype=np.float64).reshape(-1)
        if bx.size != 4 or not np.isfinite(bx).all():
            raise InputError(f"{where}: a box is four numbers X0,Y0,X1,Y1")
        x0, y0, x1, y1 = bx
        if x1 <= x0 or y1 <= y0:
            raise InputError(f"{where}: the box ({x0:g},{y0:g},{x1:g},{y1:g}) needs x1 > x0 and y1 > y0")
        if x0 < 0 or y0 < 0 or x1 > w or y1 > h:
            raise InputError(f"{where}: the box ({x0:g},{y0:g},{x1:g},{y1:g}) is outside the {w}x{h} frame")
    if pts is None and bx is None:
        raise InputError(f"{where}: give at least one click or a box")
    if pts is not None and not (labs == 1).any() and bx is None:
        raise InputError(f"{where}: at least one click must be on the object (a positive click) or give a box")
    return pts, labs, bx


# --------------------------------------------------------------------------- the model
class ClickToMask:
    """SAM 2 (``transformers.Sam2Model``) as ``(image, points, labels, box) -> (H, W) bool``."""

    def __init__(self, model: Any, *, size: tuple[int, int] = (1024, 1024), mean: Sequence[float] = _IMAGENET_MEAN,
                 std: Sequence[float] = _IMAGENET_STD, rescale: float = 1 / 255, name: str = "") -> None:
        self.model = model.eval()
        self.size = (int(size[0]), int(size[1]))  # (H, W) of the model input
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
        self.rescale = float(rescale)
        self.name = name
        self._last: tuple[str, Any] | None = None

    @classmethod
    def load(cls, model: str | Path = DEFAULT_PROMPT_MODEL, *, device: str | torch.device | None = None,
             revision: str | None = None) -> "ClickToMask":
        """Load a SAM 2 checkpoint (a Hub id or a local folder in transformers' format)."""
        from transformers import Sam2Model

        device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        try:
            net = Sam2Model.from_pretrained(str(model), revision=revision).to(device)
        except Exception as exc:  # noqa: BLE001 - missing files, offline Hub, wrong architecture
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ModelLoadError(f"--prompt-model {model}: cannot load a SAM 2 model ({first})") from None
        kwargs: dict[str, Any] = {}
        cfg = _preprocessor_config(model, revision)
        if cfg:
            size = cfg.get("size") or {}
            if "height" in size and "width" in size:
                kwargs["size"] = (size["height"], size["width"])
            if cfg.get("image_mean"):
                kwargs["mean"] = cfg["image_mean"]
            if cfg.get("image_std"):
                kwargs["std"] = cfg["image_std"]
            if cfg.get("rescale_factor"):
                kwargs["rescale"] = cfg["rescale_factor"]
        else:
            image_size = getattr(net.config.prompt_encoder_config, "image_size", 1024)
            kwargs["size"] = (image_size, image_size)
        log.info("click-to-mask model %s loaded on %s", model, device)
        return cls(net, name=str(model), **kwargs)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _embeddings(self, image: np.ndarray) -> Any:
        key = hashlib.sha1(np.ascontiguousarray(image).tobytes()).hexdigest() + str(image.shape)
        if self._last is not None and self._last[0] == key:
            return self._last[1]
        x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float()
        x = F.interpolate(x, size=self.size, mode="bilinear", align_corners=False)
        x = (x * self.rescale - self.mean) / self.std
        with torch.no_grad():
            emb = self.model.get_image_embeddings(x.to(self.device))
        self._last = (key, emb)
        return emb

    def __call__(self, image: np.ndarray, points: Any = None, labels: Any = None, box: Any = None) -> np.ndarray:
        """(H, W, 3) uint8 RGB and clicks (x, y) / labels / box (x0, y0, x1, y1) in its pixels -> (H, W) bool."""
        if image.ndim != 3 or image.shape[2] != 3:
            raise InputError(f"an image must be (H, W, 3) RGB, got shape {image.shape}")
        h, w = image.shape[:2]
        pts, labs, bx = check_prompt(points, labels, box, (w, h))
        sy, sx = self.size[0] / h, self.size[1] / w
        kwargs: dict[str, Any] = {}
        dev = self.device
        if pts is not None:
            p = torch.tensor(pts * np.array([sx, sy]), dtype=torch.float32, device=dev)
            kwargs["input_points"] = p.view(1, 1, -1, 2)
            kwargs["input_labels"] = torch.tensor(labs, dtype=torch.long, device=dev).view(1, 1, -1)
        if bx is not None:
            b = torch.tensor(bx * np.array([sx, sy, sx, sy]), dtype=torch.float32, device=dev)
            kwargs["input_boxes"] = b.view(1, 1, 4)
        with torch.no_grad():
            out = self.model(image_embeddings=self._embeddings(image), multimask_output=False, **kwargs)
        logits = out.pred_masks[0, 0, :1].float()  # (1, h', w'): the one mask of the one object
        up = F.interpolate(logits[None], size=(h, w), mode="bilinear", align_corners=False)[0, 0]
        return (up > 0).cpu().numpy()


def _preprocessor_config(model: str | Path, revision: str | None) -> dict[str, Any]:
    """The checkpoint's ``preprocessor_config.json`` ({} when it has none)."""
    path = Path(model) / "preprocessor_config.json"
    if not Path(model).is_dir():
        try:
            from huggingface_hub import hf_hub_download

            path = Path(hf_hub_download(str(model), "preprocessor_config.json", revision=revision))
        except Exception:  # noqa: BLE001 - no such file: the model's own image size is used
            return {}
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}
