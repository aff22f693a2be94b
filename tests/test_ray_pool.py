"""vidprop.ray_pool on a simulated Ray cluster: machines lost and added mid-run, every machine lost, Ctrl-C.

The cluster (``ray.cluster_utils.Cluster``, as Ray's own tests use) has a head
without CPUs and worker nodes of one CPU each that the tests add and remove.
The worker is a stand-in that takes a fraction of a second per row, so the
tests take seconds; each runs under a deadline so that a hang fails it.
"""

from __future__ import annotations

import functools
import logging
import time

import pytest

from vidprop.engine import EngineOptions, NoWorkersLeftError, open_engine

pytestmark = pytest.mark.ray


class Slow:
    """A row takes ``seconds``; returns (item squared, the id of the node that ran it)."""

    def __init__(self, seconds: float = 0.3) -> None:
        self.seconds = seconds

    def __call__(self, item: int) -> tuple[int, str]:
        import ray

        time.sleep(self.seconds)
        return item * item, ray.get_runtime_context().get_node_id()


def _opts(workers: int, **kw) -> EngineOptions:
    return EngineOptions(kind="ray", workers=workers, cpus_per_worker=1, gpus_per_worker=0, **kw)


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and r.name.startswith("vidprop")]


@pytest.mark.parametrize("graceful", [True, False], ids=["node-stopped", "node-killed"])
def test_rows_of_a_lost_node_run_on_the_worker_left_without_using_retries(ray_cluster, deadline, caplog, graceful):
    caplog.set_level(logging.INFO, logger="vidprop")
    keep = ray_cluster.add_node(num_cpus=1)
    lose = ray_cluster.add_node(num_cpus=1)
    ray_cluster.wait_for_nodes()
    items = list(range(12))
    got = {}
    with deadline(120), open_engine(functools.partial(Slow, 0.3), _opts(2, retries=0, placement_timeout=10),
                                    max_rows=len(items)) as eng:
        for n, outcome in enumerate(eng.map(items)):
            assert outcome.error is None, outcome.error  # retries=0: a lost machine must not count as a try
            got[outcome.index] = outcome.value
            if n == 2:  # mid-run, with rows in flight on both machines
                ray_cluster.remove_node(lose, allow_graceful=graceful)
        stats = eng.stats
    assert {i: v[0] for i, v in got.items()} == {i: i * i for i in items}  # every row done, exactly once
    assert stats.lost == 1 and stats.requeued >= 1 and stats.died == 0
    nodes_after = {got[i][1] for i in got} - {lose.node_id}
    assert nodes_after == {keep.node_id}
    # the replacement asked for cannot be placed (the machine left is busy): at most one warning line (if the
    # run lasts past the placement timeout), and the run goes on
    assert not [w for w in _warnings(caplog) if "could not be placed" not in w]
    assert len(_warnings(caplog)) <= 1


def test_a_node_added_mid_run_gets_rows(ray_cluster, deadline, caplog):
    caplog.set_level(logging.INFO, logger="vidprop")
    first = ray_cluster.add_node(num_cpus=1)
    ray_cluster.wait_for_nodes()
    items = list(range(24))
    got = {}
    added = None
    # two workers asked for, room for one: the second waits for resources (as on an autoscaled cluster)
    with deadline(150), open_engine(functools.partial(Slow, 0.4), _opts(2, placement_timeout=60),
                                    max_rows=len(items)) as eng:
        for outcome in eng.map(items):
            got[outcome.index] = outcome.value
            if added is None and len(got) == 2:
                added = ray_cluster.add_node(num_cpus=1)
    assert added is not None
    assert {i: v[0] for i, v in got.items()} == {i: i * i for i in items}
    by_node = {node: sum(v[1] == node for v in got.values()) for node in (first.node_id, added.node_id)}
    assert by_node[added.node_id] >= 1 and sum(by_node.values()) == len(items)  # the new machine ran rows
    assert not _warnings(caplog)


def test_with_every_worker_node_lost_the_run_stops_with_one_line(ray_cluster, deadline, caplog):
    caplog.set_level(logging.INFO, logger="vidprop")
    only = ray_cluster.add_node(num_cpus=1)
    ray_cluster.wait_for_nodes()
    items = list(range(8))
    got = {}
    t0 = time.monotonic()
    with deadline(120), pytest.raises(NoWorkersLeftError) as err:
        with open_engine(functools.partial(Slow, 0.3), _opts(1, placement_timeout=8), max_rows=len(items)) as eng:
            for outcome in eng.map(items):
                got[outcome.index] = outcome.value
                if len(got) == 2:
                    ray_cluster.remove_node(only)
    message = str(err.value)
    assert "\n" not in message and message.startswith("no Ray worker is left (1 lost with their machines")
    assert "6 of 8 rows not done" in message and "run the same command again to resume" in message
    assert time.monotonic() - t0 < 60
    assert sorted(got) == [0, 1]
    # the worker asked for in place of the lost one found no machine: one warning, then the stop
    left = _warnings(caplog)
    assert len(left) == 1 and "1 Ray worker(s) could not be placed within 8s" in left[0]
    assert "going on with 0 worker(s)" in left[0]
    # resources back: the rows not done run (what a re-run of a batch or a benchmark does)
    ray_cluster.add_node(num_cpus=1)
    ray_cluster.wait_for_nodes()
    rest = [i for i in items if i not in got]
    with deadline(120), open_engine(Slow, _opts(1, placement_timeout=30), max_rows=len(rest)) as eng:
        assert sorted(o.value[0] for o in eng.map(rest)) == [i * i for i in rest]


def test_no_worker_placed_at_start_is_one_clear_error(ray_cluster, deadline):
    from vidprop.errors import ConfigError

    ray_cluster.add_node(num_cpus=1)
    ray_cluster.wait_for_nodes()
    with deadline(60), pytest.raises(ConfigError, match=r"no Ray worker could be placed and started within 1s "
                                                        r"\(each asks for 2 CPU and 0 GPU; free in the cluster: 1 CPU"):
        with open_engine(Slow, EngineOptions(kind="ray", workers=1, cpus_per_worker=2, gpus_per_worker=0,
                                             placement_timeout=1), max_rows=3):
            pass


def test_ctrl_c_leaves_no_worker_behind(ray_cluster, deadline):
    import ray

    ray_cluster.add_node(num_cpus=1)
    ray_cluster.add_node(num_cpus=1)
    ray_cluster.wait_for_nodes()
    assert ray.cluster_resources()["CPU"] == 2
    with deadline(60), pytest.raises(KeyboardInterrupt):
        with open_engine(functools.partial(Slow, 0.5), _opts(2), max_rows=10) as eng:
            for _ in eng.map(list(range(10))):
                assert ray.available_resources().get("CPU", 0) == 0  # both workers hold their CPU
                raise KeyboardInterrupt
    t0 = time.monotonic()  # every actor killed: their CPUs are free again while this driver is still connected
    while ray.available_resources().get("CPU", 0) < 2 and time.monotonic() - t0 < 20:
        time.sleep(0.2)
    assert ray.available_resources().get("CPU", 0) == 2
