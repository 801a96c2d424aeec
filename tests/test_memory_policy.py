"""--memory low|auto|max (train/memory.py): which speed settings each device and free memory gets, that a setting
the user gave is kept, and that the picked settings train the same LoRA as the same flags given by hand."""

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from test_train_subject import config, make_subject_folder, train

from smrabooth.config import read_yaml
from smrabooth.errors import SmraboothError
from smrabooth.lora.files import load_lora
from smrabooth.train.memory import Geometry, apply_memory_policy, choose, extra_gib, run_tokens

CUDA, CPU = torch.device("cuda"), torch.device("cpu")
MOTION_1P3B = dict(tokens=13 * 36 * 20, blocks=30, width=1536)  # the measured run: 49 frames at 576x320


@pytest.mark.parametrize("free,tier", [(80, "store-4"), (70, "store-3"), (60, "frame"), (52, "frame"), (20, "low")])
def test_motion_tiers_by_free_memory(free, tier):
    """Extra memory of each tier at the measured 1.3B run: peak - 2.9 GiB of weights (store-4 65.3, store-3 58.2,
    frame 46.6); a tier is taken when it fits 90% of the free memory (80 -> 72, 70 -> 63, 60 -> 54, 52 -> 46.8)."""
    from smrabooth.train.memory import TIERS

    settings, why = choose("motion", "auto", CUDA, free, **MOTION_1P3B)
    assert settings == next(t.settings for t in TIERS["motion"] if t.name == tier)
    assert str(free) in why


def test_scaling_by_tokens_and_model_size():
    from smrabooth.train.memory import TIERS

    graphs = TIERS["subject"][0]
    assert extra_gib(graphs, "subject", 1024, 30, 1536) == pytest.approx(7.3 - 2.9)
    # 14B (40 blocks, width 5120): 4.44x the 1.3B's blocks x width; a 1024x1024 image: 4x the tokens
    assert extra_gib(graphs, "subject", 4096, 40, 5120) == pytest.approx(4.4 * 4 * 40 * 5120 / (30 * 1536))
    assert run_tokens("motion", SimpleNamespace(frames=49, height=320, width=576)) == 13 * 20 * 36
    assert run_tokens("subject", SimpleNamespace(resolution=512)) == 1024


def test_tokens_follow_the_vae_and_patch():
    """Wan2.2 TI2V-5B's VAE compresses 16x: a quarter of Wan2.1's tokens at the same size (read from the models'
    configs, as the trainers pass them), so its runs are not given the memory of a model with 4x the tokens."""
    from smrabooth.models.tiny import build_tiny_wan22_pipeline, build_tiny_wan_pipeline

    wan21, ti2v = build_tiny_wan_pipeline(), build_tiny_wan22_pipeline("ti2v")
    assert Geometry.of(wan21.transformer, wan21.vae) == Geometry(8, 4, (1, 2, 2))
    g = Geometry.of(ti2v.transformer, ti2v.vae)
    assert g == Geometry(16, 4, (1, 2, 2))
    motion, subject = SimpleNamespace(frames=49, height=320, width=576), SimpleNamespace(resolution=512)
    assert run_tokens("motion", motion, g) == 13 * 10 * 18  # 704x1280 would be 13 * 22 * 40
    assert run_tokens("subject", subject, g) == 256
    assert run_tokens("subject", SimpleNamespace(resolution=512), Geometry(8, 4, (1, 4, 2))) == 16 * 32


def test_modes_devices_and_validation():
    assert choose("subject", "low", CUDA, 80, 1024, 30, 1536)[0] == {"gradient_checkpointing": True}
    assert choose("subject", "max", CUDA, 1, 1024, 30, 1536)[0]["cuda_graphs"] is True
    assert choose("subject", "auto", CUDA, 80, 1024, 30, 1536, validating=True)[0].get("cuda_graphs") is None
    assert choose("motion", "auto", CPU, None, 1000, 30, 1536)[0] == {"gradient_checkpointing": False}
    with pytest.raises(SmraboothError, match="--memory 'fast'"):
        choose("motion", "fast", CUDA, 80, 1000, 30, 1536)
    with pytest.raises(SmraboothError, match="--memory 'fast'"):
        config(Path("/tmp"), memory="fast").validate()


def test_a_setting_the_user_gave_is_kept(tiny_pipe, tmp_path):
    tr = tiny_pipe.transformer
    cfg = config(tmp_path, gradient_checkpointing=True)  # the field's default: the policy may change it
    assert apply_memory_policy(cfg, "subject", tr, CPU).gradient_checkpointing is False
    assert apply_memory_policy(cfg, "subject", tr, CPU, explicit={"gradient_checkpointing"}).gradient_checkpointing
    low = config(tmp_path, gradient_checkpointing=True, memory="low")
    assert apply_memory_policy(low, "subject", tr, CPU).gradient_checkpointing is True
    compiled = config(tmp_path, compile=True)  # not the default: given from Python, kept
    assert apply_memory_policy(compiled, "subject", tr, CPU).compile is True


def test_the_picked_settings_train_the_same_lora_and_are_recorded(tmp_path):
    """auto on a CPU turns checkpointing off: the run records it, and trains the LoRA the flag trains."""
    make_subject_folder(tmp_path / "subject")
    _, auto = train(tmp_path, steps=2, gradient_checkpointing=True, out=str(tmp_path / "auto"))
    _, low = train(tmp_path, steps=2, gradient_checkpointing=True, memory="low", out=str(tmp_path / "low"))
    saved = read_yaml(tmp_path / "auto" / "config.yaml")
    assert (saved["memory"], saved["gradient_checkpointing"]) == ("auto", False)
    assert read_yaml(tmp_path / "low" / "config.yaml")["gradient_checkpointing"] is True
    a, b = load_lora(auto), load_lora(low)
    assert all(torch.allclose(a.tensors[k], b.tensors[k], atol=1e-6) for k in a.tensors)


def test_the_tiled_decode_and_the_vaes_dtype_scale_the_motion_tiers():
    """official decodes MoRA's window in overlapping tiles (1.87x the pixels at 576x320) in the transformer's
    dtype: in bf16 the measured store-3 peak (72.4 GiB of an H100's 79) is what the scale predicts, too close to
    the 70.3 GiB that were free for auto to take it (it takes 'frame'); in fp32, where store-3 once ran out of
    memory on that H100, only the low tier fits."""
    from smrabooth.align.mora import tiled_pixels
    from smrabooth.train.memory import TIERS, mora_decode_scale

    assert tiled_pixels(40, 72) == pytest.approx((30 + 25) * (52 + 46) / (40 * 72))  # tiles at rows 0, 15; cols 0, 26
    official = SimpleNamespace(use_mora=True, mora_decode="tiled", height=320, width=576)
    bf16, fp32 = mora_decode_scale(official, 2), mora_decode_scale(official, 4)
    assert mora_decode_scale(SimpleNamespace(use_mora=True, mora_decode="whole", height=320, width=576), 4) == 1.0
    assert mora_decode_scale(SimpleNamespace(use_mora=False), 4) == 1.0
    # a 16x VAE's latent grid at 576x320 (20 x 36) fits one tile: nothing decoded twice
    assert mora_decode_scale(official, 2, spatial=16) == pytest.approx(bf16 / tiled_pixels(40, 72))
    store3 = next(t for t in TIERS["motion"] if t.name == "store-3")
    assert extra_gib(store3, "motion", **MOTION_1P3B, decode_scale=bf16) == pytest.approx(72.4 - 2.9, rel=0.01)
    frame = next(t for t in TIERS["motion"] if t.name == "frame")
    assert choose("motion", "auto", CUDA, 70.3, **MOTION_1P3B, decode_scale=bf16)[0] == frame.settings
    assert choose("motion", "auto", CUDA, 130, **MOTION_1P3B, decode_scale=bf16)[0] == TIERS["motion"][0].settings
    assert choose("motion", "auto", CUDA, 70.3, **MOTION_1P3B, decode_scale=fp32)[0] == TIERS["motion"][-1].settings
