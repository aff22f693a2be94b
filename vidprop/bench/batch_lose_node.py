"""``vidprop bench batch --lose-node``: a batch on a Ray cluster, without and with a machine lost halfway.

A cluster is simulated on this machine (``ray.cluster_utils.Cluster``: a head
that runs no worker and ``--nodes`` worker nodes of ``--cpus-per-node`` CPUs),
and the same batch runs twice with one worker per node: once undisturbed,
once with one worker node removed when half the rows are done.  Printed: the
run time of each, the rows sent back to the queue and run again on the
workers left, the workers lost, and whether the outputs of both runs are
byte-identical.  ``--kill`` removes the node without a graceful stop (a
crashed machine, found dead only when Ray's health checks time out).
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any, Callable

__all__ = ["run_lose_node"]


def _remove_when_half_done(cluster: Any, node: Any, out: Path, rows: int, graceful: bool) -> threading.Thread:
    def watch() -> None:
        rows_dir = out / ".vidprop-batch" / "rows"
        while True:
            done = 0
            for p in rows_dir.glob("*.json") if rows_dir.is_dir() else []:
                try:
                    done += json.loads(p.read_text()).get("state") == "done"
                except (OSError, ValueError):
                    pass
            if done >= rows // 2:
                cluster.remove_node(node, allow_graceful=graceful)
                return
            time.sleep(0.05)

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    return t


def run_lose_node(manifest: Path, tmp: Path, *, overrides: dict[str, Any], videos: int, nodes: int,
                  cpus_per_node: int, graceful: bool, placement_timeout: float,
                  masks: Callable[[Path], dict[str, bytes]]) -> list[str]:
    """Run the batch twice on a simulated cluster; the lines to print."""
    import ray
    from ray.cluster_utils import Cluster

    from vidprop.batch import run_batch
    from vidprop.engine import EngineOptions

    lines = []
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 0, "include_dashboard": False,
        "_system_config": {"health_check_period_ms": 1000, "health_check_failure_threshold": 5}})
    try:
        results = {}
        for label in ("undisturbed", "node lost halfway"):
            workers = [cluster.add_node(num_cpus=cpus_per_node) for _ in range(nodes)]
            cluster.wait_for_nodes()
            ray.init(address=cluster.address, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
            try:
                eng = EngineOptions(kind="ray", workers=nodes, cpus_per_worker=cpus_per_node, gpus_per_worker=0,
                                    retries=0, placement_timeout=placement_timeout)
                out = tmp / f"out-{'lose' if results else 'all'}"
                watcher = (_remove_when_half_done(cluster, workers[-1], out, videos, graceful)
                           if results else None)
                t0 = time.perf_counter()
                rep = run_batch(manifest, out, overrides=overrides, overlay=False, progress=False, engine=eng)
                wall = time.perf_counter() - t0
                if watcher is not None:
                    watcher.join(timeout=60)
                results[label] = (rep, wall, masks(out))
            finally:
                ray.shutdown()
                for node in list(cluster.worker_nodes):
                    cluster.remove_node(node)
    finally:
        cluster.shutdown()
    lines.append(f"{'run':<20}{'workers':>8}{'done':>6}{'start-up s':>12}{'total s':>9}{'rows redone':>13}"
                 f"{'workers lost':>14}")
    for label, (rep, wall, _) in results.items():
        e = rep.engine
        lines.append(f"{label:<20}{e.get('workers', 0):>8}{rep.count('done'):>6}{e.get('startup_seconds', 0):>12.2f}"
                     f"{wall:>9.2f}{e.get('rows_requeued', 0):>13}{e.get('workers_lost', 0):>14}")
    (_, wall_a, ref), (_, wall_b, got) = results.values()
    same = sum(got.get(k) == v for k, v in ref.items())
    lines.append(f"node lost halfway: {wall_b / wall_a:.2f}x the undisturbed run's time; "
                 f"{same}/{len(ref)} masks byte-identical to the undisturbed run")
    return lines
