"""The models of the pair benchmarks as their runs handle them: loaded in a worker, reported to the driver.

Shared by :mod:`vidprop.eval.pair_predict` (the pair engine) and the workers
of :mod:`vidprop.eval.spair` and :mod:`vidprop.eval.hpatches`:

* :func:`load_matcher`, :func:`load_attention_matcher`: the model a worker
  uses, from a loaded one, a TaskConfig or a picklable callable that builds it;
* :func:`dtype_name`, :func:`attention_info`: what a worker reports of it;
* :func:`recorded_model`: what the run record reads of that report;
* :func:`wants_gpu`: whether the engine should give the workers a GPU.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

__all__ = ["dtype_name", "is_loaded_matcher", "is_loaded_attention", "load_matcher", "load_attention_matcher", "attention_info", "recorded_model", "wants_gpu"]


def dtype_name(obj: Any) -> str | None:
    """The precision a model actually computes in (``float32``, ``float16`` ...), when it says."""
    for holder in (obj, getattr(obj, "extractor", None)):
        dt = getattr(holder, "dtype", None)
        if dt is not None:
            return str(dt).replace("torch.", "")
    return None


def is_loaded_matcher(matcher: Any) -> bool:
    """A loaded PairMatcher (it has ``features``), not a config or a builder."""
    return hasattr(matcher, "features")


def load_matcher(matcher: Any) -> Any:
    """A PairMatcher from itself, a TaskConfig (loaded) or a callable that builds one."""
    from vidprop.config import TaskConfig

    if isinstance(matcher, TaskConfig):
        from vidprop.tasks.match import PairMatcher

        return PairMatcher.from_pretrained(config=matcher)
    if not is_loaded_matcher(matcher) and callable(matcher):
        return matcher()
    return matcher


def wants_gpu(matcher: Any) -> bool:
    """False only for a TaskConfig that names a CPU device (a loaded or built matcher may use a GPU)."""
    from vidprop.config import TaskConfig

    if isinstance(matcher, TaskConfig):
        return not str(matcher.extractor.device).startswith("cpu")
    return True


def is_loaded_attention(attention: Any) -> bool:
    """A loaded AttentionMatcher (it has ``match``), not a builder."""
    return hasattr(attention, "match")


def load_attention_matcher(attention: Any) -> Any:
    """An AttentionMatcher from itself or from a picklable callable that builds one (in an engine worker)."""
    return attention if is_loaded_attention(attention) or not callable(attention) else attention()


def attention_info(attention: Any) -> dict[str, Any]:
    """What the driver records of a (worker's) attention matcher: its settings, model and precision."""
    return {"config": None, "dtype": dtype_name(attention), "revision": None,
            "settings": getattr(attention, "settings", None), "model_id": getattr(attention, "model_id", None)}


def recorded_model(info: dict[str, Any], attention: Any = None) -> Any:
    """What :func:`~vidprop.eval.runs.run_record` reads of the model that ran, from what the workers report
    (the model itself may live in another process): the attention settings, model and precision, or the
    config and revision of the DIFT matcher."""
    if attention is not None:
        return SimpleNamespace(settings=info.get("settings"), model_id=info.get("model_id"), dtype=info.get("dtype"))
    return SimpleNamespace(config=info["config"], extractor=SimpleNamespace(model_revision=info.get("revision")))
