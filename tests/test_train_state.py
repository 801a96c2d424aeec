"""smrabooth.train.state: the training-state code every training loop shares."""

import json

import numpy as np
import pytest
import torch

from smrabooth.train.state import JsonlLog, atomic_path, numpy_rng_state, read_log, rng_state, set_rng_state


def draws(generator):
    """One draw from each RNG a training step uses."""
    return (torch.rand(3, generator=generator), torch.rand(3), np.random.rand(3), np.random.randn(1))


def test_rng_state_restores_every_generator_exactly(tmp_path):
    from safetensors.torch import load_file, save_file

    generator = torch.Generator().manual_seed(1)
    torch.manual_seed(2)
    np.random.seed(3)
    np.random.randn(1)  # numpy now holds a cached Gaussian, part of its state
    save_file(rng_state(generator), str(tmp_path / "rng.safetensors"))  # survives safetensors
    expected = draws(generator)
    draws(generator)  # move every generator on
    set_rng_state(load_file(str(tmp_path / "rng.safetensors")), generator)
    for a, b in zip(expected, draws(generator)):
        assert np.array_equal(np.asarray(a), np.asarray(b))


def test_rng_state_reads_the_older_json_numpy_state():
    generator = torch.Generator().manual_seed(1)
    np.random.seed(5)
    legacy = numpy_rng_state()  # what checkpoints kept in state.json before
    state = {k: v for k, v in rng_state(generator).items() if not k.startswith("numpy")}
    expected = np.random.rand(4)
    set_rng_state(state, generator, numpy_state=json.loads(json.dumps(legacy)))
    assert np.array_equal(np.random.rand(4), expected)


def test_atomic_path_is_complete_or_absent(tmp_path):
    final = tmp_path / "step-2"
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(final) as tmp:
            tmp.mkdir()
            (tmp / "a").write_text("half")
            raise KeyboardInterrupt("power cut")
    assert not final.exists()
    with atomic_path(final) as tmp:  # the next call clears the leftover and replaces nothing yet
        tmp.mkdir()
        (tmp / "a").write_text("1")
    with atomic_path(final) as tmp:  # and then replaces a complete folder by another
        tmp.mkdir()
        (tmp / "b").write_text("2")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-2"]
    assert [p.name for p in final.iterdir()] == ["b"]
    with atomic_path(tmp_path / "state.pt") as tmp:  # a file as well
        torch.save({"step": 3}, tmp)
    assert torch.load(tmp_path / "state.pt", weights_only=True) == {"step": 3}


def test_jsonl_log_truncates_to_the_checkpoint_on_resume_and_starts_empty_otherwise(tmp_path):
    path = tmp_path / "log.jsonl"
    log = JsonlLog(path)
    for step in (1, 2, 3):
        log.write({"step": step, "loss": 1.0 / step})
    assert [r["step"] for r in read_log(path)] == [1, 2, 3]
    JsonlLog(path, resume_step=2).write({"step": 3, "loss": 0.5})  # step 3 was logged, never checkpointed
    assert read_log(path) == [{"step": 1, "loss": 1.0}, {"step": 2, "loss": 0.5}, {"step": 3, "loss": 0.5}]
    JsonlLog(path)
    assert read_log(path) == [] and read_log(tmp_path / "none.jsonl") == []
