"""Shared fixtures: a tiny random Stable Diffusion saved in diffusers format.

Nothing here downloads anything: the Hub is forced offline, and the model
folder is written by the tests themselves and loaded through the same
``from_pretrained`` path users take.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="session")
def tiny_sd_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A local diffusers-format folder with a tiny random SD (unet, vae, scheduler, tokenizer, text_encoder)."""
    from vidprop.features.tiny import save_random_sd

    return save_random_sd(tmp_path_factory.mktemp("models") / "tiny-sd")


@pytest.fixture(scope="session")
def real_model_path() -> Path:
    """A real SD folder from VIDPROP_TEST_MODEL; tests marked ``weights`` skip without it."""
    path = os.environ.get("VIDPROP_TEST_MODEL")
    if not path or not Path(path).is_dir():
        pytest.skip("real Stable Diffusion weights are not available (set VIDPROP_TEST_MODEL to a local folder)")
    return Path(path)


@pytest.fixture(scope="session")
def tiny_backbones(tmp_path_factory, tiny_sd_path) -> dict:
    """Extractor settings of every backbone on tiny random weights saved in each library's own format.

    name -> ExtractorConfig overrides (a dict for ``TaskConfig.override(extractor=...)``).
    """
    from safetensors.torch import save_file

    from vidprop.features.adm import ADM_TINY, save_random_adm
    from vidprop.features.dinov3 import save_random_dinov3
    from vidprop.features.tiny import build_random_sd
    from vidprop.features.vit import save_random_vit

    root = tmp_path_factory.mktemp("backbones")
    adm = save_random_adm(root / "tiny-adm.pt", ADM_TINY, seed=1)
    vits = {k: save_random_vit(root / k, k, seed=i) for i, k in enumerate(("dino", "clip", "dinov2"))}
    dinov3 = save_random_dinov3(root / "dinov3", seed=3)
    unet = build_random_sd("tiny", seed=2, with_text_encoder=False)["unet"]
    save_file({k: v.contiguous() for k, v in unet.state_dict().items()}, str(root / "cleandift.safetensors"))
    sd = str(tiny_sd_path)
    return {
        "sd": {"backbone": "sd", "model": sd, "ensemble": 1},
        "adm": {"backbone": "adm", "weights": str(adm), "up_ft_index": 0, "ensemble": 1},
        "dino": {"backbone": "dino", "model": str(vits["dino"])},
        "clip": {"backbone": "clip", "model": str(vits["clip"]), "layer": 1, "final_norm": False},
        "dinov2": {"backbone": "dinov2", "model": str(vits["dinov2"])},
        "sd+dinov2": {"backbone": "sd+dinov2", "model": sd, "dino_model": str(vits["dinov2"]), "final_norm": False,
                      "fusion_sd_blocks": (1, 3, 5), "fusion_pca_dims": (1, 3, 4), "t": 100, "ensemble": 1},
        "cleandift": {"backbone": "cleandift", "model": sd, "weights": str(root / "cleandift.safetensors"), "ensemble": 1,
                      "up_ft_index": 1},
        "dinov3": {"backbone": "dinov3", "model": str(dinov3)},
    }


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray instance for every test that needs it (2 CPUs, 2 logical GPUs, no dashboard)."""
    ray = pytest.importorskip("ray")
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, num_gpus=2, include_dashboard=False, logging_level="WARNING")
    yield ray
    if started:
        ray.shutdown()


@pytest.fixture
def torch_threads():
    """``with torch_threads(n):`` runs a block with n torch CPU threads (float sums depend on the thread count)."""
    import contextlib

    @contextlib.contextmanager
    def use(n: int):
        saved = torch.get_num_threads()
        torch.set_num_threads(n)
        try:
            yield
        finally:
            torch.set_num_threads(saved)

    return use


class RunnerCalled(Exception):
    """Raised by a runner stubbed with :func:`stub_runner`: the command got as far as calling it."""


@pytest.fixture
def stub_runner(monkeypatch):
    """``calls = stub_runner(module, "run_spair")``: the runner records what it was called with
    (``calls["run_spair"] = (args, kwargs)``) and raises :class:`RunnerCalled` instead of running, to test a
    command's wiring without a model."""
    calls: dict = {}

    def stub(module, name: str) -> dict:
        def run(*args, **kwargs):
            calls[name] = (args, kwargs)
            raise RunnerCalled(name)

        monkeypatch.setattr(module, name, run)
        return calls

    return stub
