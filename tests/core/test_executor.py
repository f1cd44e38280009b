"""Executor behaviour a user relies on: what re-runs, seeds, cancel, budgets, errors."""

from __future__ import annotations

import threading
import time

import pytest

from tests.core.toy import CALLS, SLOW_STARTED, chain_graph, graph_dict, toy_registry
from vdnodes.core import events as ev
from vdnodes.core.cache import TensorCache
from vdnodes.core.errors import NodeError, RunCancelled
from vdnodes.core.executor import CancelToken, Executor
from vdnodes.core.graph import load_graph


@pytest.fixture()
def reg():
    return toy_registry()


@pytest.fixture(autouse=True)
def _reset_calls():
    CALLS.clear()
    yield


def run(executor, reg, data, **kw):
    return executor.run(load_graph(data, reg), **kw)


def test_first_run_computes_all_and_second_run_is_fully_cached(reg):
    ex = Executor(reg)
    r1 = run(ex, reg, chain_graph())
    assert r1.outputs["result"] == 10
    assert sorted(r1.executed) == ["a", "b", "double", "rnd", "sum"]
    r2 = run(ex, reg, chain_graph())
    assert r2.executed == [] and r2.outputs["result"] == 10
    assert CALLS["toy.add"] == 1 and CALLS["toy.const"] == 2


def test_changing_one_param_reruns_exactly_that_node_and_descendants(reg):
    ex = Executor(reg)
    run(ex, reg, chain_graph())
    data = chain_graph()
    data["nodes"]["b"]["params"]["value"] = 5
    CALLS.clear()
    r = run(ex, reg, data)
    assert sorted(r.executed) == ["b", "double", "sum"]
    assert CALLS == {"toy.const": 1, "toy.add": 1, "toy.scale": 1}
    assert r.outputs["result"] == 14


def test_renaming_and_moving_nodes_reruns_nothing(reg):
    ex = Executor(reg)
    run(ex, reg, chain_graph())
    data = chain_graph()
    rename = {"a": "left", "b": "right", "sum": "plus", "double": "twice", "rnd": "dice"}
    nodes = {}
    for old, spec in data["nodes"].items():
        spec = dict(spec)
        if "inputs" in spec:
            spec["inputs"] = {k: [rename[v[0]], v[1]] for k, v in spec["inputs"].items()}
        nodes[rename[old]] = spec
    moved = graph_dict(nodes, outputs={"result": "twice.y"}, ui={"left": {"pos": [900, -40]}})
    CALLS.clear()
    r = run(ex, reg, moved)
    assert r.executed == [] and sum(CALLS.values()) == 0
    assert r.outputs["result"] == 10


def test_seeded_node_changes_with_seed_and_only_then(reg):
    ex = Executor(reg)
    data = graph_dict({"n": {"type": "toy.noise", "params": {"seed": 1, "high": 10**9}}})
    v1 = run(ex, reg, data).outputs["n.value"]
    again = run(ex, reg, data)
    assert again.executed == [] and again.outputs["n.value"] == v1
    fresh = Executor(reg)  # a new process would compute the same value
    assert run(fresh, reg, data).outputs["n.value"] == v1
    data["nodes"]["n"]["params"]["seed"] = 2
    v2 = run(ex, reg, data).outputs["n.value"]
    assert v2 != v1
    # A run-level seed derives a new stream; the same run seed gives the same value.
    v3 = run(ex, reg, data, seed=123).outputs["n.value"]
    assert v3 not in (v1, v2)
    assert run(fresh, reg, data, seed=123).outputs["n.value"] == v3


def test_only_what_the_requested_output_needs_runs(reg):
    ex = Executor(reg)
    r = run(ex, reg, chain_graph(), targets=["random"])
    assert r.executed == ["rnd"]
    assert CALLS["toy.add"] == 0


def test_cached_ancestors_are_not_visited(reg):
    ex = Executor(reg)
    run(ex, reg, chain_graph(), targets=["sum"])
    r = run(ex, reg, chain_graph(), targets=["result"])
    assert r.executed == ["double"]
    # 'a' and 'b' are not even served: only 'sum' is read from the cache.
    assert r.cached == ["sum"]


def test_events_in_order_and_json_serialisable(reg):
    seen: list[ev.Event] = []
    ex = Executor(reg)
    data = graph_dict({"c": {"type": "toy.const", "params": {"value": 1}},
                       "s": {"type": "toy.slow", "params": {"steps": 3}, "inputs": {"x": ["c", "value"]}}})
    run(ex, reg, data, on_event=seen.append)
    kinds = [e.kind for e in seen]
    assert kinds[0] == "run_started" and kinds[-1] == "run_finished"
    assert kinds.count("node_started") == 2 and kinds.count("node_finished") == 2
    fractions = [e.fraction for e in seen if isinstance(e, ev.NodeProgress)]
    assert fractions == pytest.approx([1 / 3, 2 / 3, 1.0])
    for e in seen:
        assert '"event"' in e.to_json()
    run(ex, reg, data, on_event=seen.append)
    assert [e.kind for e in seen].count("node_cached") == 1  # only 's' is needed from cache


def test_cancel_mid_run_stops_promptly_and_keeps_cache_consistent(reg):
    ex = Executor(reg)
    data = graph_dict({"c": {"type": "toy.const", "params": {"value": 1}},
                       "s": {"type": "toy.slow", "params": {"steps": 2000}, "inputs": {"x": ["c", "value"]}},
                       "after": {"type": "toy.scale", "params": {"times": 3}, "inputs": {"x": ["s", "y"]}}})
    token = CancelToken()
    SLOW_STARTED.clear()
    result = {}

    def worker():
        result["r"] = ex.run(load_graph(data, reg), cancel=token, raise_errors=False)

    t = threading.Thread(target=worker)
    t.start()
    assert SLOW_STARTED.wait(5)
    t0 = time.perf_counter()
    token.cancel()
    t.join(5)
    assert not t.is_alive() and time.perf_counter() - t0 < 1.0  # 2000 steps would take 20 s
    r = result["r"]
    assert r.status == "cancelled" and isinstance(r.error, RunCancelled)
    assert r.executed == ["c"] and CALLS["toy.scale"] == 0
    # The cache holds exactly the finished node, nothing partial from 's'.
    assert len(ex.cache) == 1
    data["nodes"]["s"]["params"]["steps"] = 3
    CALLS.clear()
    r2 = ex.run(load_graph(data, reg))
    assert r2.outputs["after.y"] == (1 + 3) * 3
    assert r2.executed == ["s", "after"]  # 'c' came from the cache


def test_budget_smaller_than_working_set_evicts_and_stays_correct(reg):
    nodes = {"c": {"type": "toy.const", "params": {"value": 3}}}
    for i in range(6):
        nodes[f"big{i}"] = {"type": "toy.big", "params": {"kib": 256 + i}, "inputs": {"x": ["c", "value"]}}
        nodes[f"sum{i}"] = {"type": "toy.total", "inputs": {"blob": [f"big{i}", "blob"]}}
    data = graph_dict(nodes)
    budget = 600 * 1024  # the six blobs need ~1.5 MiB
    ex = Executor(reg, cache=TensorCache(budgets={"cpu": budget}))
    r = run(ex, reg, data)
    expected = {f"sum{i}.sum": 3 * (256 + i) * 1024 for i in range(6)}
    assert {k: r.outputs[k] for k in expected} == expected
    assert ex.cache.bytes_by_device()["cpu"] <= budget
    assert ex.cache.stats.dropped > 0
    # A re-run recomputes what was dropped and still gets the right numbers.
    r2 = run(ex, reg, data)
    assert {k: r2.outputs[k] for k in expected} == expected
    assert ex.cache.bytes_by_device()["cpu"] <= budget


def test_node_failure_names_node_and_hint(reg):
    ex = Executor(reg)
    data = graph_dict({"c": {"type": "toy.const"}, "f": {"type": "toy.fail", "inputs": {"x": ["c", "value"]}}})
    with pytest.raises(NodeError) as info:
        run(ex, reg, data)
    err = info.value
    assert err.node_id == "f" and "boom" in str(err) and "--debug" in str(err)
    assert err.exit_code == 1
    r = run(ex, reg, data, raise_errors=False)
    assert r.status == "failed" and r.executed == []  # 'c' came from the cache


def test_wrong_runtime_value_is_reported_with_expected_and_got(reg):
    from vdnodes.core.node import Out, node

    @node("toy.liar", version="1.0.0", category="toy", outputs={"text": Out("Text")})
    def liar(ctx):
        return 42

    reg.register(liar)
    with pytest.raises(NodeError) as info:
        run(Executor(reg), reg, graph_dict({"l": {"type": "toy.liar"}}))
    msg = str(info.value)
    assert "'l'" in msg and "socket 'text'" in msg and "expected Text" in msg and "got int" in msg
