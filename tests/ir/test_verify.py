"""The verifier reports every violation at once, with the failing nodes marked in the IR text."""

from __future__ import annotations

import numpy as np
import pytest

from snnc.errors import IRError
from snnc.ir import Graph, verify
from snnc.ir import nodes as N


def _lif_params(n: int, **over) -> dict[str, np.ndarray]:
    p = {k: np.full(n, v, np.float32) for k, v in
         dict(decay=0.9, gain=1.0, bias=0.0, threshold=1.0, reset_value=0.0).items()}  # fmt: skip
    p.update(over)
    return p


def test_verifier_collects_every_violation() -> None:
    g = Graph(
        {
            "input": N.Input(shape=(4,)),
            "fc": N.Affine(origin="torch:fc"),
            "lif": N.LIF(origin="torch:lif"),
            "ghost": N.Linear(),
            "output": N.Output(shape=(3,)),
        },
        {"fc": ["input"], "lif": ["fc"], "ghost": ["nowhere"], "output": ["lif"]},
        {
            "fc": {"weight": np.ones((3, 4)), "bias": np.array([0.0, np.nan, 0.0])},
            "lif": _lif_params(3, decay=np.array([0.9, np.inf, 0.9], np.float32)),
            "ghost": {},
        },
    )
    with pytest.raises(IRError) as e:
        verify(g)
    msg = str(e.value)
    assert "'fc' (Affine, from torch:fc): parameter 'bias' has 1 NaN or infinite value(s)" in msg
    assert "'lif' (LIF, from torch:lif): parameter 'decay' has 1 NaN" in msg
    assert "'ghost' (Linear): reads unknown node 'nowhere'" in msg
    assert "'ghost' (Linear): missing parameter 'weight'" in msg
    assert "  ^^^ parameter 'bias' has 1 NaN or infinite value(s)" in msg  # marked IR text


def test_shape_mismatch_is_reported_at_the_consumer() -> None:
    g = Graph(
        {"input": N.Input(shape=(4,)), "fc": N.Linear(origin="nir:fc"),
         "lif": N.LIF(), "output": N.Output(shape=(5,))},
        {"fc": ["input"], "lif": ["fc"], "output": ["lif"]},
        {"fc": {"weight": np.ones((3, 4))}, "lif": _lif_params(5)},
    )  # fmt: skip
    with pytest.raises(IRError, match=r"'lif' \(LIF\): population of shape \(5,\) gets input "
                                      r"of shape \(3,\)"):  # fmt: skip
        verify(g)


def test_cycle_without_delay_is_refused() -> None:
    g = Graph(
        {"input": N.Input(shape=(2,)), "lif": N.LIF(), "rec": N.Linear(),
         "output": N.Output(shape=(2,))},
        {"lif": ["input", "rec"], "rec": ["lif"], "output": ["lif"]},
        {"lif": _lif_params(2), "rec": {"weight": np.eye(2)}},
    )  # fmt: skip
    with pytest.raises(IRError, match="cycle without a one-step Delay through"):
        verify(g)
    fixed = Graph(
        {**g.nodes, "d": N.Delay()},
        {**g.inputs, "d": ["lif"], "rec": ["d"]},
        {**g.params, "d": {"steps": np.ones(2, np.int64)}},
    )
    assert verify(fixed).topo_order() == ["input", "d", "rec", "lif", "output"]


def test_zero_step_delay_does_not_break_a_cycle() -> None:
    g = Graph(
        {
            "input": N.Input(shape=(2,)),
            "lif": N.LIF(),
            "d": N.Delay(),
            "output": N.Output(shape=(2,)),
        },
        {"lif": ["input", "d"], "d": ["lif"], "output": ["lif"]},
        {"lif": _lif_params(2), "d": {"steps": np.array([1, 0])}},
    )
    with pytest.raises(IRError, match="cycle without a one-step Delay"):
        verify(g)


def test_node_invariants_are_checked_when_made() -> None:
    with pytest.raises(IRError, match="Conv2d.stride must be >= 1"):
        N.Conv2d(stride=(0, 1))
    with pytest.raises(IRError, match="timing 'gated' needs reset 'subtract'"):
        N.LIF(reset="to_value", timing="gated")
    with pytest.raises(ValueError):
        N.LIF(reset="sideways")


def test_missing_input_and_output_nodes() -> None:
    with pytest.raises(IRError) as e:
        verify(Graph({}))
    assert "graph has no Input node" in str(e.value)
    assert "graph has no Output node" in str(e.value)
