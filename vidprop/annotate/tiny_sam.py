"""A randomly initialised tiny SAM 2, saved in transformers' format (tests, benchmarks; no download).

The folder loads through exactly the path of a real checkpoint
(:meth:`vidprop.annotate.prompts.ClickToMask.load`): ``Sam2Model`` weights and
config plus the ``preprocessor_config.json`` a Hub checkpoint carries (here:
128x128 input instead of 1024x1024).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

__all__ = ["save_random_sam2"]


def save_random_sam2(folder: str | Path, *, seed: int = 0, image_size: int = 128) -> Path:
    """Build a tiny random ``Sam2Model`` with transformers' config classes and save it to ``folder``."""
    from transformers import (
        Sam2Config,
        Sam2HieraDetConfig,
        Sam2MaskDecoderConfig,
        Sam2Model,
        Sam2PromptEncoderConfig,
        Sam2VisionConfig,
    )

    s = int(image_size)
    backbone = Sam2HieraDetConfig(hidden_size=12, image_size=s, patch_stride=4, patch_kernel_size=7, patch_padding=3,
                                  blocks_per_stage=[1, 1, 1, 1], embed_dim_per_stage=[12, 24, 48, 96],
                                  num_attention_heads_per_stage=[1, 1, 1, 1])
    vision = Sam2VisionConfig(backbone_config=backbone, backbone_channel_list=[96, 48, 24, 12],
                              backbone_feature_sizes=[[s // 4, s // 4], [s // 8, s // 8], [s // 16, s // 16]],
                              fpn_hidden_size=32)
    prompt = Sam2PromptEncoderConfig(image_size=s, patch_size=16, mask_input_channels=8, hidden_size=32)
    decoder = Sam2MaskDecoderConfig(hidden_size=32, mlp_dim=64, num_attention_heads=4, iou_head_hidden_dim=32)
    torch.manual_seed(seed)
    model = Sam2Model(Sam2Config(vision_config=vision, prompt_encoder_config=prompt, mask_decoder_config=decoder))
    folder = Path(folder)
    model.save_pretrained(folder)
    pre = {"image_processor_type": "Sam2ImageProcessorFast", "size": {"height": s, "width": s},
           "mask_size": {"height": s // 4, "width": s // 4}, "image_mean": [0.485, 0.456, 0.406],
           "image_std": [0.229, 0.224, 0.225], "rescale_factor": 1 / 255, "do_normalize": True, "do_rescale": True,
           "do_resize": True}
    (folder / "preprocessor_config.json").write_text(json.dumps(pre, indent=1) + "\n")
    return folder
