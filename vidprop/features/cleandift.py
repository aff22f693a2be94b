"""CleanDIFT (Stracke et al., CVPR 2025): SD U-Net weights fine-tuned to give noise-free features.

The published checkpoints (``CompVis/cleandift``: ``cleandift_sd21_unet.safetensors``,
``cleandift_sd15_unet.safetensors``) are diffusers U-Net state dicts that
replace Stable Diffusion's; they are loaded here with strict key matching.
Features then come from the CLEAN latents (no noise added, one pass, no
ensemble) with the usual DIFT up-block read-out.

The timestep given to the U-Net: the authors' extractor passes a timestep
that was learned during their fine-tuning (a scalar parameter initialised
at 261, stored in their "full" checkpoint, not in the U-Net-only file).
vidprop uses that learned value when it reads a full checkpoint (keys
``unet_feature_extractor_cleandift.*`` and ``timestep``), and otherwise the
preset's ``t`` (261: the learned parameter's starting value, DIFT's
semantic timestep, and the one their validation used).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from vidprop.errors import ModelLoadError

__all__ = ["DEFAULT_CLEANDIFT_WEIGHTS", "resolve_weights_file", "read_cleandift_state_dict", "load_cleandift_unet"]

log = logging.getLogger(__name__)

#: The SD 2.1 U-Net file of the authors' Hub repository.
DEFAULT_CLEANDIFT_WEIGHTS = "CompVis/cleandift/cleandift_sd21_unet.safetensors"
_FULL_PREFIX = "unet_feature_extractor_cleandift."


def resolve_weights_file(weights: str) -> Path:
    """A local file, or ``<owner>/<repo>/<file>`` fetched from the Hugging Face Hub (cached; offline-aware)."""
    local = Path(weights).expanduser()
    if local.is_file():
        return local
    parts = weights.split("/")
    if weights.startswith((".", "/", "~")) or len(parts) < 3:
        raise ModelLoadError(f"weights file {weights} not found; pass a local .safetensors file or "
                             f"<hub repo id>/<file name> (e.g. {DEFAULT_CLEANDIFT_WEIGHTS})")
    from huggingface_hub import hf_hub_download

    repo, filename = "/".join(parts[:2]), "/".join(parts[2:])
    try:
        return Path(hf_hub_download(repo_id=repo, filename=filename))
    except Exception as exc:  # noqa: BLE001 - hub / network errors of many kinds
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(
            f"could not get {filename} from the Hub repository {repo}: {reason[:300]}; if this machine is offline, "
            f"download it elsewhere (`huggingface-cli download {repo} {filename}`) and pass --weights /path/to/{Path(filename).name}"
        ) from exc


def read_cleandift_state_dict(path: str | Path) -> tuple[dict[str, torch.Tensor], float | None]:
    """The U-Net state dict of a CleanDIFT file, and the learned timestep when the file has it."""
    from safetensors.torch import load_file

    path = Path(path)
    try:
        state = load_file(str(path)) if path.suffix == ".safetensors" else torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - format errors of many kinds
        raise ModelLoadError(f"{path}: not a readable state dict ({type(exc).__name__}: {exc})") from None
    if not isinstance(state, dict):
        raise ModelLoadError(f"{path}: expected a state dict, got {type(state).__name__}")
    timestep = None
    if any(k.startswith(_FULL_PREFIX) for k in state):  # the authors' full checkpoint
        ts = state.get("timestep")
        timestep = float(ts) if ts is not None else None
        state = {k[len(_FULL_PREFIX) :]: v for k, v in state.items() if k.startswith(_FULL_PREFIX)}
    return state, timestep


def load_cleandift_unet(unet: Any, weights: str) -> float | None:
    """Replace ``unet``'s weights by the CleanDIFT file ``weights`` (strict); return the learned timestep if stored."""
    path = resolve_weights_file(weights)
    state, timestep = read_cleandift_state_dict(path)
    own = unet.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))
    if missing or unexpected or wrong:
        parts = [f"{len(keys)} {label} (e.g. {', '.join(keys[:3])})"
                 for label, keys in (("missing", missing), ("unexpected", unexpected), ("with other shapes", wrong)) if keys]
        raise ModelLoadError(f"{path}: not a U-Net state dict for this Stable Diffusion model: keys " + "; ".join(parts)
                             + " (cleandift_sd21_unet goes with SD 2.1, cleandift_sd15_unet with SD 1.5)")
    unet.load_state_dict(state, strict=True)
    log.info("loaded CleanDIFT U-Net weights from %s%s", path,
             f" (learned timestep {timestep:.2f})" if timestep is not None else "")
    return timestep
