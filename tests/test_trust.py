"""A run folder from a colleague must not be able to run code: checkpoints load with ``weights_only=True``."""

from __future__ import annotations

import pickle

import pytest
import torch

from sitsr_core.checkpoint import load_checkpoint, save_checkpoint
from sitsr_core.errors import SitsrConfigError


class _Payload:
    """Pickles as a call to ``Path.touch(marker)``: loading it with full unpickling creates the marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        from pathlib import Path

        return (Path.touch, (Path(self.marker),))


def test_checkpoint_that_would_run_code_is_refused(tmp_path):
    marker = tmp_path / "code-ran"
    path = tmp_path / "checkpoint.pt"
    torch.save({"model": {}, "step": 1, "payload": _Payload(marker)}, path)
    # the file really is a code-running pickle: plain unpickling would execute it
    with pytest.raises(SitsrConfigError, match=r"checkpoint\.pt: .*refus|checkpoint\.pt: .*weights"):
        load_checkpoint(path)
    assert not marker.exists()
    torch.load(path, weights_only=False)  # the reference: full unpickling does run it
    assert marker.exists()


def test_checkpoint_with_rng_states_round_trips(tmp_path):
    """What training saves (tensors, numpy/python RNG states as dicts, tuples and big ints) loads safely."""
    import random

    import numpy as np

    rng = np.random.default_rng(3)
    gen = torch.Generator().manual_seed(5)
    state = {"model": {"w": torch.arange(4.0)}, "step": 7,
             "rng": {"numpy": rng.bit_generator.state, "torch": gen.get_state(),
                     "torch_global": torch.get_rng_state(), "python": random.getstate()}}
    save_checkpoint(tmp_path / "c.pt", state)
    back = load_checkpoint(tmp_path / "c.pt")
    assert back["rng"]["numpy"] == rng.bit_generator.state
    assert back["rng"]["python"] == random.getstate()
    assert torch.equal(back["rng"]["torch"], gen.get_state())
    assert pickle.dumps(back["step"]) == pickle.dumps(7)
