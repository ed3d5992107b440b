"""Bit-for-bit comparison of training checkpoints (the resume and interruption tests)."""

from __future__ import annotations

import torch


def tensors(state, prefix: str = ""):
    """``(path, tensor)`` pairs of a nested checkpoint state (dicts, lists, tuples)."""
    if isinstance(state, torch.Tensor):
        yield prefix, state
    elif isinstance(state, dict):
        for k, v in state.items():
            yield from tensors(v, f"{prefix}/{k}")
    elif isinstance(state, (list, tuple)):
        for i, v in enumerate(state):
            yield from tensors(v, f"{prefix}/{i}")


def assert_same_states(a: dict, b: dict) -> None:
    """Identical model, EMA and optimiser tensors and numpy / python / torch generator states."""
    for key in ("model", "ema", "optimizer"):
        ta, tb = dict(tensors(a[key])), dict(tensors(b[key]))
        assert ta.keys() == tb.keys() and ta
        for name in ta:
            assert torch.equal(ta[name], tb[name]), (key, name)
    assert a["rng"]["numpy"] == b["rng"]["numpy"] and a["rng"].get("python") == b["rng"].get("python")
    assert torch.equal(a["rng"]["torch"], b["rng"]["torch"])
