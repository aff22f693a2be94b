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
# One Ray authentication mode for the whole test process.  A local ``ray.init()`` turns token authentication on
# for the process (RAY_AUTH_MODE=token, cached in Ray's config, kept after ``ray.shutdown()``), while the simulated
# cluster of ``ray_cluster`` runs without it: once a local instance had run, the workers of the cluster's new
# nodes could not start ("no Ray worker could be placed").  Both run without tokens here, on 127.0.0.1 only.
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

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


class RaySessions:
    """The test process's one Ray connection: the local instance of ``ray_local`` or the simulated cluster of
    ``ray_cluster`` (``ray.cluster_utils.Cluster``, as Ray's own tests use), switched as tests ask for them and
    shut down (the cluster torn down) at the end of the session."""

    def __init__(self, ray) -> None:
        self.ray, self.kind, self.cluster = ray, None, None

    def connect(self, kind: str) -> None:
        ray = self.ray
        if self.kind == kind and ray.is_initialized():
            return
        if ray.is_initialized():
            ray.shutdown()
        self.kind = None
        if kind == "local":
            # "local": a new instance even while the simulated cluster runs (ray.init() alone would join it)
            ray.init(address="local", num_cpus=2, num_gpus=2, include_dashboard=False, logging_level="WARNING")
        else:
            if self.cluster is None:
                from ray.cluster_utils import Cluster

                # a head that runs no worker (0 CPUs): workers live on the nodes a test adds and removes
                self.cluster = Cluster(initialize_head=True, head_node_args={
                    "num_cpus": 0, "include_dashboard": False,
                    # a node killed outright is declared dead within seconds (Ray's default: about 30 s)
                    "_system_config": {"health_check_period_ms": 500, "health_check_failure_threshold": 4}})
            ray.init(address=self.cluster.address, include_dashboard=False, logging_level="WARNING")
        self.kind = kind

    def close(self) -> None:
        if self.ray.is_initialized():
            self.ray.shutdown()
        if self.cluster is not None:
            self.cluster.shutdown()
            self.cluster = None


@pytest.fixture(scope="session")
def ray_sessions():
    ray = pytest.importorskip("ray")
    sessions = RaySessions(ray)
    try:
        yield sessions
    finally:
        sessions.close()


@pytest.fixture
def ray_local(ray_sessions):
    """A local Ray instance shared by the tests that need one (2 CPUs, 2 logical GPUs, no dashboard)."""
    ray_sessions.connect("local")
    return ray_sessions.ray


@pytest.fixture
def ray_cluster(ray_sessions):
    """The simulated cluster (a head without CPUs), this process connected to it; add worker nodes with
    ``ray_cluster.add_node(num_cpus=1)``.  The nodes a test added and did not remove are removed after it."""
    ray_sessions.connect("cluster")
    cluster = ray_sessions.cluster
    try:
        yield cluster
    finally:
        for node in list(cluster.worker_nodes):
            cluster.remove_node(node)


@pytest.fixture
def deadline():
    """``with deadline(60):`` fails the block with TimeoutError once it has run 60 s (a hang fails the test)."""
    import contextlib
    import signal

    @contextlib.contextmanager
    def within(seconds: float):
        def expire(signum, frame):
            raise TimeoutError(f"still running after {seconds:g}s: it hangs")

        previous = signal.signal(signal.SIGALRM, expire)
        signal.setitimer(signal.ITIMER_REAL, seconds)
        try:
            yield
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)

    return within


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
