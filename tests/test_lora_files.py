"""LoRA files: stock diffusers loads ours and agrees with us; format round trips; clear errors."""

import json

import numpy as np
import pytest
import torch
from conftest import make_random_lora
from safetensors import safe_open
from safetensors.torch import save_file

from smrabooth.errors import SmraboothError
from smrabooth.lora.files import check_lora_fits, describe_lora, load_lora, save_lora
from smrabooth.sampling import GenerateConfig, generate

SMALL = dict(frames=5, height=32, width=32, steps=3, guidance=4.0, seed=1)


def stock_with_lora(pipe, path, prompt):
    pipe.load_lora_weights(str(path), adapter_name="x")
    try:
        out = pipe(prompt=prompt, num_frames=SMALL["frames"], height=SMALL["height"], width=SMALL["width"],
                   num_inference_steps=SMALL["steps"], guidance_scale=SMALL["guidance"],
                   generator=torch.Generator().manual_seed(SMALL["seed"]), output_type="np").frames[0]
    finally:
        pipe.delete_adapters(["x"])
    return (np.clip(out, 0, 1) * 255).round().astype(np.uint8)


@pytest.mark.parametrize("fmt", ["diffusers", "comfyui"])
def test_stock_diffusers_loads_our_lora_and_matches_dense(tiny_pipe, tmp_path, fmt):
    tr = tiny_pipe.transformer
    lora = make_random_lora(tr, rank=4, alpha=8.0, seed=5, kind="subject")  # alpha != rank on purpose
    path = save_lora(tmp_path / f"subject_{fmt}.safetensors", lora, fmt=fmt)
    cfg = GenerateConfig(prompt="a V* dog", injection="dense", subject_scale=1.0, **SMALL)
    ours = generate(tiny_pipe, cfg, subject_lora=load_lora(path), progress=False).frames
    stock = stock_with_lora(tiny_pipe, path, "a V* dog")
    base = generate(tiny_pipe, GenerateConfig(prompt="a V* dog", **SMALL), progress=False).frames
    assert np.abs(ours.astype(int) - stock.astype(int)).max() <= 1
    assert np.abs(ours.astype(int) - base.astype(int)).max() > 5  # the LoRA really acts


def test_saved_file_has_diffusers_metadata(tiny_pipe, tmp_path):
    lora = make_random_lora(tiny_pipe.transformer, rank=4, alpha=4.0, layer_types=["q", "v"], kind="motion")
    path = save_lora(tmp_path / "m.safetensors", lora)
    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
        keys = list(f.keys())
    adapter = json.loads(meta["lora_adapter_metadata"])
    assert adapter["transformer.r"] == 4 and adapter["transformer.lora_alpha"] == 4.0
    assert sorted(adapter["transformer.target_modules"]) == ["attn1.to_q", "attn1.to_v", "attn2.to_q", "attn2.to_v"]
    assert all(k.startswith("transformer.blocks.") for k in keys) and len(keys) == 2 * 2 * 4
    info = json.loads(meta["smrabooth"])
    assert info["kind"] == "motion" and info["base"]["num_layers"] == 2
    back = load_lora(path)
    assert back.layer_types == ("q", "v") and back.num_blocks == 2 and back.rank == 4


@pytest.mark.parametrize("alpha", [4.0, 16.0])
@pytest.mark.parametrize("fmt", ["comfyui", "diffsynth"])
def test_round_trips(tiny_pipe, tmp_path, fmt, alpha):
    lora = make_random_lora(tiny_pipe.transformer, rank=4, alpha=alpha, seed=7)
    a = save_lora(tmp_path / "a.safetensors", lora)
    b = save_lora(tmp_path / f"b_{fmt}.safetensors", load_lora(a), fmt=fmt)
    c = save_lora(tmp_path / "c.safetensors", load_lora(b), fmt="diffusers")
    orig, mid, back = load_lora(a), load_lora(b), load_lora(c)
    assert mid.info["source_format"] == fmt
    assert set(back.tensors) == set(orig.tensors)
    if fmt == "comfyui" or alpha == 4.0:  # bit-exact: alpha travels as .alpha / needs no baking
        assert back.alpha == orig.alpha
        for k in orig.tensors:
            assert torch.equal(back.tensors[k], orig.tensors[k]), k
    # always: the same weight delta alpha/r * B @ A in every layer
    for k in orig.tensors:
        if k.endswith("lora_A.weight"):
            kb = k.replace("lora_A", "lora_B")
            delta = orig.alpha / orig.rank * orig.tensors[kb] @ orig.tensors[k]
            delta_back = back.alpha / back.rank * back.tensors[kb] @ back.tensors[k]
            torch.testing.assert_close(delta_back, delta, rtol=1e-6, atol=1e-6)


def test_key_names_of_each_format(tiny_pipe, tmp_path):
    lora = make_random_lora(tiny_pipe.transformer, rank=2, alpha=2.0, layer_types=["q", "o", "ffn.0"])
    for fmt, key in [("diffusers", "transformer.blocks.1.attn2.to_out.0.lora_B.weight"),
                     ("comfyui", "diffusion_model.blocks.1.cross_attn.o.lora_B.weight"),
                     ("diffsynth", "blocks.1.cross_attn.o.lora_B.default.weight")]:
        with safe_open(str(save_lora(tmp_path / f"{fmt}.safetensors", lora, fmt=fmt)), "pt") as f:
            keys = set(f.keys())
        assert key in keys
        if fmt == "comfyui":
            assert "diffusion_model.blocks.0.self_attn.q.alpha" in keys and "diffusion_model.blocks.0.ffn.0.lora_A.weight" in keys
        if fmt == "diffusers":
            assert "transformer.blocks.0.ffn.net.0.proj.lora_A.weight" in keys


def test_diffsynth_files_with_any_adapter_name_load(tiny_pipe, tmp_path):
    """The SMRABooth authors' trainers save peft's adapter name in each key (spatial_lora, temporal_lora), and their
    subject files hold their SuRA projector's tensors beside the LoRA."""
    lora = make_random_lora(tiny_pipe.transformer, rank=2, alpha=2.0, layer_types=["q", "k", "ffn.0"])
    default = tmp_path / "default.safetensors"
    save_lora(default, lora, fmt="diffsynth")
    with safe_open(str(default), "pt") as f:
        renamed = {k.replace(".default.", ".spatial_lora."): f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    renamed["pipe.projectors.0.0.bias"] = torch.zeros(4)  # their subject files carry the SuRA projector too
    save_file(renamed, str(tmp_path / "theirs.safetensors"))
    a, b = load_lora(default), load_lora(tmp_path / "theirs.safetensors")
    assert b.info["source_format"] == "diffsynth" and set(a.tensors) == set(b.tensors)
    assert all(torch.equal(a.tensors[k], b.tensors[k]) for k in a.tensors)


def test_bad_lora_files(tiny_pipe, tmp_path):
    with pytest.raises(SmraboothError, match="no such file"):
        load_lora(tmp_path / "missing.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file at all")
    with pytest.raises(SmraboothError, match="not a readable safetensors"):
        load_lora(junk)
    other = tmp_path / "other.safetensors"
    save_file({"model.layer.weight": torch.zeros(2, 2)}, str(other))
    with pytest.raises(SmraboothError, match="is not a Wan LoRA"):
        load_lora(other)
    # made for a wider model (as a 14B LoRA on the 1.3B model)
    lora = make_random_lora(tiny_pipe.transformer, rank=2)
    wide = {k: torch.zeros(v.shape[0], v.shape[1] * 2) if k.endswith("lora_A.weight") else v
            for k, v in lora.tensors.items()}
    lora.tensors = wide
    with pytest.raises(SmraboothError, match="made for another model size"):
        check_lora_fits(lora, tiny_pipe.transformer.config, "wide.safetensors")
    deep = make_random_lora(tiny_pipe.transformer, rank=2)
    deep.tensors = {k.replace("blocks.1.", "blocks.7."): v for k, v in deep.tensors.items()}
    with pytest.raises(SmraboothError, match="has block 7 but the model has 2 blocks"):
        check_lora_fits(deep, tiny_pipe.transformer.config, "deep.safetensors")


def test_describe_lora(tiny_pipe, tmp_path):
    lora = make_random_lora(tiny_pipe.transformer, rank=4, alpha=4.0, kind="subject")
    text = describe_lora(load_lora(save_lora(tmp_path / "s.safetensors", lora)))
    assert "rank:         4" in text and "layers:       20" in text and "blocks:       2" in text
    assert "q, k, v, o, ffn.0, ffn.2" in text and "kind:         subject" in text
