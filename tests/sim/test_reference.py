"""The reference simulator against spike trains worked out by hand.

Every value below is exactly representable (decay 0.5, inputs in quarters), so the expected
trains follow from the node docstrings with pencil and paper.
"""

from __future__ import annotations

import numpy as np
import pytest

from snnc.errors import SimulationError
from snnc.ir import Graph
from snnc.ir import nodes as N
from snnc.sim.reference import simulate

X = [2.5, 0.5, 0.0, 1.0, 1.5]


def _one(node: N.Node, **params: float) -> Graph:
    p = {k: np.array([v], np.float32) for k, v in params.items()}
    return Graph(
        {"input": N.Input(shape=(1,)), "n": node, "output": N.Output(shape=(1,))},
        {"n": ["input"], "output": ["n"]},
        {"n": p},
    )


def _run(g: Graph, xs) -> list[int]:
    x = np.array(xs, np.float32).reshape(len(xs), 1, 1)
    return [int(v) for v in simulate(g, x).reshape(-1)]


LIF = dict(decay=0.5, gain=1.0, bias=0.0, threshold=1.0, reset_value=0.0)
R, T = N.ResetMode, N.ResetTiming


@pytest.mark.parametrize(
    ("reset", "timing", "expected"),
    [
        (R.TO_VALUE, T.IMMEDIATE, [1, 0, 0, 1, 1]),
        (R.SUBTRACT, T.IMMEDIATE, [1, 1, 0, 1, 1]),
        (R.SUBTRACT, T.NEXT_STEP, [1, 0, 0, 1, 1]),
        (R.TO_VALUE, T.NEXT_STEP, [1, 0, 0, 0, 1]),
        (R.NONE, T.IMMEDIATE, [1, 1, 0, 1, 1]),
        (R.SUBTRACT, T.GATED, [1, 0, 0, 1, 1]),
    ],
)
def test_lif_reset_modes_and_timings(reset, timing, expected) -> None:
    assert _run(_one(N.LIF(reset=reset, timing=timing), **LIF), X) == expected


def test_gated_differs_from_immediate_subtract_when_membrane_stays_above_threshold() -> None:
    # after t0 the membrane is 1.5 > threshold: the gated rule raises the bar at t1
    imm = _run(_one(N.LIF(reset=R.SUBTRACT, timing=T.IMMEDIATE), **LIF), [2.5, 0.5])
    gated = _run(_one(N.LIF(reset=R.SUBTRACT, timing=T.GATED), **LIF), [2.5, 0.5])
    assert (imm, gated) == ([1, 1], [1, 0])


def test_strict_and_non_strict_threshold() -> None:
    assert _run(_one(N.LIF(strict=True), **LIF), [1.0]) == [0]
    assert _run(_one(N.LIF(strict=False), **LIF), [1.0]) == [1]
    assert _run(_one(N.Threshold(strict=True), threshold=1.0), [1.0, 1.25]) == [0, 1]


def test_gain_and_bias() -> None:
    g = _one(N.LIF(), **{**LIF, "gain": 2.0, "bias": 0.25})
    assert _run(g, [0.25, 0.25]) == [0, 1]  # 0.75, then 0.375 + 0.5 + 0.25 = 1.125


def test_if_and_cubalif() -> None:
    p = {k: v for k, v in LIF.items() if k != "decay"}
    assert _run(_one(N.IF(), **p), X) == [1, 0, 0, 1, 1]
    cuba = _one(N.CubaLIF(), decay_i=0.5, gain_i=1.0, **LIF)
    assert _run(cuba, X) == [1, 1, 0, 1, 1]


def test_li_outputs_the_membrane() -> None:
    g = _one(N.LI(), decay=0.5, gain=1.0, bias=0.0)
    x = np.array(X, np.float32).reshape(5, 1, 1)
    assert simulate(g, x).reshape(-1).tolist() == [2.5, 1.75, 0.875, 1.4375, 2.21875]


def test_delay_per_element() -> None:
    g = Graph(
        {"input": N.Input(shape=(3,)), "d": N.Delay(), "output": N.Output(shape=(3,))},
        {"d": ["input"], "output": ["d"]},
        {"d": {"steps": np.array([0, 1, 2])}},
    )
    x = np.array([[1, 1, 1], [2, 2, 2], [3, 3, 3]], np.float32)[:, None, :]
    assert simulate(g, x)[:, 0].tolist() == [[1, 0, 0], [2, 1, 0], [3, 2, 1]]


def test_recurrence_sees_the_previous_step() -> None:
    # one neuron exciting itself by 0.75 through a one-step delay, driven once at t0
    g = Graph(
        {"input": N.Input(shape=(1,)), "lif": N.LIF(), "d": N.Delay(), "rec": N.Linear(),
         "output": N.Output(shape=(1,))},
        {"lif": ["input", "rec"], "d": ["lif"], "rec": ["d"], "output": ["lif"]},
        {"lif": {k: np.array([v], np.float32) for k, v in LIF.items()},
         "d": {"steps": np.array([1])}, "rec": {"weight": np.array([[0.75]])}},
    )  # fmt: skip
    # t0: 1.25 fires (v=0); t1: 0.75 no; t2: 0.375 no ...
    assert _run(g, [1.25, 0, 0, 0.5]) == [1, 0, 0, 0]
    # t0 fires; t1: 0 + 0.75 + 0.5 = 1.25 fires; t2: 0.75 + 0 = 0.75
    assert _run(g, [1.25, 0.5, 0, 0]) == [1, 1, 0, 0]


def test_pools_and_flatten() -> None:
    g = Graph(
        {"input": N.Input(shape=(1, 2, 4)), "sum": N.SumPool2d(kernel=(2, 2), stride=(2, 2)),
         "avg": N.AvgPool2d(kernel=(2, 2), stride=(2, 2)), "flat": N.Flatten(),
         "output": N.Output(shape=(2,))},
        {"sum": ["input"], "avg": ["input"], "flat": ["sum", "avg"], "output": ["flat"]},
    )  # fmt: skip
    x = np.arange(8, dtype=np.float32).reshape(1, 1, 1, 2, 4)
    # windows [0,1,4,5] and [2,3,6,7]: sums 10 and 18, means 2.5 and 4.5; flatten sums both
    assert simulate(g, x)[0, 0].tolist() == [12.5, 22.5]


def test_bad_input_shape_says_what_is_expected() -> None:
    g = _one(N.LIF(), **LIF)
    with pytest.raises(SimulationError, match=r"expected \(T, B, 1\)"):
        simulate(g, np.zeros((3, 1, 2), np.float32))
    with pytest.raises(SimulationError, match="NaN"):
        simulate(g, np.full((3, 1, 1), np.nan, np.float32))
