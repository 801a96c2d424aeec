"""Backbones: picking one for a model, and generation against the stock diffusers pipelines (WanPipeline for
Wan2.1, Wan2.2 A14B and TI2V-5B; TextToVideoSDPipeline for ZeroScope) on tiny random models, with and without
LoRAs, the injection schedule across A14B's two experts, and nothing left behind."""

import json
import warnings

import numpy as np
import pytest
import torch
from conftest import make_random_lora

from smrabooth.backbones import BACKBONES, backbone_for_model, backbone_of
from smrabooth.errors import SmraboothError
from smrabooth.lora.files import save_lora
from smrabooth.sampling import GenerateConfig, attach_loras, detach_loras, execution_options, generate, sample_video

warnings.filterwarnings("ignore", message=".*TextToVideoSDPipeline has been deprecated.*")

WAN = ("wan2.1", "wan2.2-a14b", "wan2.2-ti2v")
SIZE = {"wan2.1": (32, 48), "wan2.2-a14b": (32, 48), "wan2.2-ti2v": (64, 64)}  # TI2V: multiples of 32


def small(name, **kw):
    h, w = SIZE[name]
    return {"frames": 9, "height": h, "width": w, "steps": 4, "guidance": 5.0, "seed": 3, **kw}


def stock_frames(pipe, prompt, negative=None, **kw):
    extra = {"guidance_scale_2": kw["guidance_2"]} if kw.get("guidance_2") is not None else {}
    out = pipe(prompt=prompt, negative_prompt=negative, num_frames=kw["frames"], height=kw["height"],
               width=kw["width"], num_inference_steps=kw["steps"], guidance_scale=kw["guidance"],
               generator=torch.Generator().manual_seed(kw["seed"]), output_type="np", **extra).frames[0]
    return (np.clip(out, 0, 1) * 255).round().astype(np.uint8)


def diff(a, b) -> int:
    return int(np.abs(a.astype(int) - b.astype(int)).max())


@pytest.fixture(scope="module")
def pipes():
    return {name: BACKBONES[name].build_tiny() for name in WAN}


def random_loras(pipe, seed, kind):
    """One random LoRA per denoiser (a file each, recording its expert on A14B)."""
    out = []
    for i, (expert, module) in enumerate(backbone_of(pipe).denoisers(pipe).items()):
        lora = make_random_lora(module, seed=seed + 10 * i, kind=kind, scale=0.3)
        if expert != "main":
            lora.info["expert"] = expert
        out.append(lora)
    return out


# ---------------------------------------------------------------- which backbone
def test_backbone_for_model_by_folder_and_hub_id(tmp_path):
    def folder(name, index):
        (tmp_path / name).mkdir()
        (tmp_path / name / "model_index.json").write_text(json.dumps(index))
        return tmp_path / name

    wan = {"_class_name": "WanPipeline", "transformer": ["diffusers", "WanTransformer3DModel"]}
    assert backbone_for_model(folder("w21", {**wan, "transformer_2": [None, None]})).name == "wan2.1"
    assert backbone_for_model(folder("a14b", {**wan, "transformer_2": ["diffusers", "WanTransformer3DModel"],
                                              "boundary_ratio": 0.875})).name == "wan2.2-a14b"
    assert backbone_for_model(folder("ti2v", {**wan, "expand_timesteps": True})).name == "wan2.2-ti2v"
    assert backbone_for_model(folder("zs", {"_class_name": "TextToVideoSDPipeline"})).name == "zeroscope"
    assert backbone_for_model("Wan-AI/Wan2.2-T2V-A14B-Diffusers").name == "wan2.2-a14b"
    assert backbone_for_model("Wan-AI/Wan2.2-TI2V-5B-Diffusers").name == "wan2.2-ti2v"
    assert backbone_for_model("Wan-AI/Wan2.1-T2V-1.3B-Diffusers").name == "wan2.1"
    assert backbone_for_model("cerspense/zeroscope_v2_576w").name == "zeroscope"
    assert backbone_for_model("Wan-AI/Wan2.1-T2V-1.3B-Diffusers", "unet").name == "zeroscope"  # the old spelling
    with pytest.raises(SmraboothError, match="--backbone wan: .* is a ZeroScope"):
        backbone_for_model(tmp_path / "zs", "wan")
    with pytest.raises(SmraboothError, match="--backbone 'sd3': choose from auto, wan2.1"):
        backbone_for_model("x/y", "sd3")


def test_backbone_of_a_pipeline(pipes):
    from smrabooth.models.unet import build_tiny_zeroscope_pipeline

    assert {name: backbone_of(pipe).name for name, pipe in pipes.items()} == {n: n for n in WAN}
    assert backbone_of(build_tiny_zeroscope_pipeline()).name == "zeroscope"
    a14b = pipes["wan2.2-a14b"]
    assert list(backbone_of(a14b).denoisers(a14b)) == ["high", "low"]
    assert backbone_of(a14b).denoisers(a14b)["low"] is a14b.transformer_2


# ---------------------------------------------------------------- frames equal the stock pipelines'
@pytest.mark.parametrize("name", WAN)
def test_no_lora_equals_stock_wanpipeline(pipes, name):
    pipe = pipes[name]
    kw = small(name, guidance_2=3.0 if name == "wan2.2-a14b" else None)
    # on A14B with --offload: one expert on the device at a time (the same frames)
    ours = generate(pipe, GenerateConfig(prompt="a V* dog on the beach", negative_prompt="blurry",
                                         offload=name == "wan2.2-a14b", **kw), progress=False).frames
    stock = stock_frames(pipe, "a V* dog on the beach", "blurry", **kw)
    assert ours.shape == (9, *SIZE[name], 3) and ours.std() > 5
    assert diff(ours, stock) <= 1


@pytest.mark.parametrize("name", WAN)
def test_loras_equal_stock_wanpipeline_with_the_files_loaded(pipes, name, tmp_path):
    """Our files (one per A14B expert), loaded by stock diffusers `load_lora_weights` (the low-noise one with
    load_into_transformer_2=True), give the frames of our generation with both LoRAs at scale 1 everywhere."""
    from smrabooth.backbones.wan22 import expert_file_name

    pipe = BACKBONES[name].build_tiny()  # stock loading leaves adapters behind: a pipeline of its own
    kw = small(name)
    subject, motion = random_loras(pipe, 1, "subject"), random_loras(pipe, 2, "motion")
    cfg = GenerateConfig(prompt="a V* dog doing S*", injection="dense", subject_scale=1.0, subject_scale_early=1.0,
                         motion_scale=1.0, **kw)
    ours = generate(pipe, cfg, subject, motion, progress=False).frames
    plain = generate(pipe, GenerateConfig(prompt="a V* dog doing S*", **kw), progress=False).frames
    assert diff(ours, plain) > 5  # the LoRAs act

    for kind, files in (("subject", subject), ("motion", motion)):
        for lora in files:
            expert = lora.info.get("expert")
            path = tmp_path / (expert_file_name(f"{kind}.safetensors", expert) if expert else f"{kind}.safetensors")
            save_lora(path, lora)
            pipe.load_lora_weights(str(path), adapter_name=kind, load_into_transformer_2=expert == "low")
    for module in backbone_of(pipe).denoisers(pipe).values():
        module.set_adapters(["subject", "motion"], [1.0, 1.0])
    assert diff(ours, stock_frames(pipe, "a V* dog doing S*", **kw)) <= 1


def test_a14b_generate_command_runs_both_experts(tmp_path, capsys):
    """`smrabooth generate` on a saved tiny Wan2.2 A14B folder gives stock WanPipeline's frames. Before the
    backbones it ran `transformer` alone and exited 0 with frames up to 46 levels off."""
    from diffusers import WanPipeline
    from PIL import Image

    from smrabooth.cli import main

    model = tmp_path / "a14b"
    assert main(["tiny-model", "--kind", "wan2.2-a14b", "--out", str(model)]) == 0
    assert json.loads((model / "model_index.json").read_text())["boundary_ratio"] == 0.875
    kw = small("wan2.2-a14b")
    assert main(["generate", "--model", str(model), "--dtype", "fp32", "--prompt", "a dog", "--frames", "9",
                 "--height", "32", "--width", "48", "--steps", "4", "--seed", "3", "--save-frames",
                 str(tmp_path / "frames"), "--out", str(tmp_path / "v.mp4")]) == 0
    ours = np.stack([np.asarray(Image.open(p)) for p in sorted((tmp_path / "frames").glob("*.png"))])
    stock_pipe = WanPipeline.from_pretrained(model)
    stock = stock_frames(stock_pipe, "a dog", **kw)
    assert diff(ours, stock) <= 1
    stock_pipe.transformer_2 = stock_pipe.transformer  # what the command computed before: one transformer
    assert diff(stock_frames(stock_pipe, "a dog", **kw), stock) > 10


# ---------------------------------------------------------------- the injection across experts
def record_lora_scales(pipe):
    """Forward pre-hooks on every LoRA layer of every denoiser: (expert, layer type, {adapter: scale used})."""
    from peft.tuners.lora import LoraLayer

    from smrabooth.lora.targets import layer_type_of

    calls, handles = [], []
    for expert, module in backbone_of(pipe).denoisers(pipe).items():
        for name, layer in module.named_modules():
            if isinstance(layer, LoraLayer) and layer_type_of(name):
                def hook(mod, args, name=name, expert=expert):
                    used = {a: mod.scaling[a] / (mod.lora_alpha[a] / mod.r[a]) for a in mod.active_adapters
                            if a in mod.lora_A}
                    calls.append((expert, layer_type_of(name), used))
                handles.append(layer.register_forward_pre_hook(hook))
    return calls, handles


def test_sparse_injection_and_t_point_across_a14b_experts(pipes):
    """Each step runs one expert (the stock boundary), and in it the subject LoRA on q/k/ffn.0 at its scale of the
    step (0.3 before T_point, 0.9 after) and the motion LoRA on v/o/ffn.0/ffn.2: both experts follow one schedule."""
    pipe = pipes["wan2.2-a14b"]
    steps, t_point = 6, 2
    cfg = GenerateConfig(prompt="a V* dog doing S*", t_point=t_point, subject_scale_early=0.3, subject_scale=0.9,
                         motion_scale=0.7, **small("wan2.2-a14b", steps=steps))
    loras = attach_loras(pipe, cfg, random_loras(pipe, 1, "subject"), random_loras(pipe, 2, "motion"))
    calls, handles = record_lora_scales(pipe)
    marks, experts = [], []
    try:
        sample_video(pipe, cfg, loras, progress=False, on_step=lambda i, s: marks.append(len(calls)))
    finally:
        for h in handles:
            h.remove()
        detach_loras(pipe)
    marks.append(len(calls))
    for step in range(steps):
        step_calls = calls[marks[step]:marks[step + 1]]
        assert len(step_calls) == 2 * 2 * 10  # cond + uncond, 2 blocks x 10 LoRA linears, ONE expert
        experts.append({e for e, _, _ in step_calls}.pop())
        for _, ltype, used in step_calls:
            expected = {}
            if ltype in ("q", "k", "ffn.0"):
                expected["subject"] = 0.3 if step < t_point else 0.9
            if ltype in ("v", "o", "ffn.0", "ffn.2"):
                expected["motion"] = 0.7
            assert used == pytest.approx(expected)
    sched_t = [backbone_of(pipe).expert_at(pipe, t) for t in _timesteps(pipe, steps)]
    assert experts == sched_t and set(experts) == {"high", "low"}  # the stock boundary, both experts ran


def _timesteps(pipe, steps):
    sched = type(pipe.scheduler).from_config(pipe.scheduler.config)
    sched.set_timesteps(steps)
    return list(sched.timesteps)


def test_expert_placement_of_lora_files(pipes):
    from smrabooth.sampling import place_loras

    pipe = pipes["wan2.2-a14b"]
    high, low = random_loras(pipe, 1, "subject")
    plain = make_random_lora(pipe.transformer, seed=5)  # a file that records no expert (e.g. a Wan2.1 LoRA)
    experts = ("high", "low")
    assert {e: w for e, (w, _) in place_loras(experts, "subject", [low, high]).items()} == {"high": high, "low": low}
    assert {e: w for e, (w, _) in place_loras(experts, "subject", plain).items()} == {"high": plain, "low": plain}
    assert {e: w for e, (w, _) in place_loras(experts, "subject", high, "low").items()} == {"low": high}
    with pytest.raises(SmraboothError, match="two files for the high-noise expert"):
        place_loras(experts, "subject", [high, plain])
    with pytest.raises(SmraboothError, match="--subject-lora: 2 files, but this model has one transformer"):
        place_loras(("main",), "subject", [high, low])
    with pytest.raises(SmraboothError, match="--subject-experts places a LoRA in Wan2.2 A14B's experts"):
        generate(pipes["wan2.1"], GenerateConfig(prompt="x", subject_experts="low", **small("wan2.1")))
    with pytest.raises(SmraboothError, match="--width 48: Wan2.2 TI2V-5B needs a multiple of 32"):
        generate(pipes["wan2.2-ti2v"], GenerateConfig(prompt="x", **small("wan2.1")))


def test_merged_equals_adapter_and_both_experts_come_back_bit_for_bit(pipes):
    pipe = pipes["wan2.2-a14b"]
    before = {e: {k: v.clone() for k, v in m.state_dict().items()}
              for e, m in backbone_of(pipe).denoisers(pipe).items()}
    subject, motion = random_loras(pipe, 1, "subject"), random_loras(pipe, 2, "motion")
    kw = dict(prompt="a V* dog doing S*", t_point=2, subject_scale_early=0.3, **small("wan2.2-a14b", steps=6))
    adapter = generate(pipe, GenerateConfig(lora_mode="adapter", **kw), subject, motion, progress=False).frames
    merged = generate(pipe, GenerateConfig(lora_mode="merged", **kw), subject, motion, progress=False).frames
    assert diff(adapter, merged) <= 1
    for expert, module in backbone_of(pipe).denoisers(pipe).items():
        assert not getattr(module, "peft_config", None)
        after = module.state_dict()
        assert after.keys() == before[expert].keys() and all(torch.equal(before[expert][k], after[k]) for k in after)


def test_step_cache_and_compile_apply_to_both_experts_and_are_undone(pipes):
    pipe = pipes["wan2.2-a14b"]
    denoisers = backbone_of(pipe).denoisers(pipe)
    with execution_options(pipe, GenerateConfig(compile=True, cache="first-block")):
        for module in denoisers.values():
            assert all(getattr(b, "_compiled_call_impl", None) is not None for b in module.blocks)
            assert module.is_cache_enabled
    for module in denoisers.values():
        assert all(getattr(b, "_compiled_call_impl", None) is None for b in module.blocks)
        assert not module.is_cache_enabled
    kw = dict(prompt="a V* dog", **small("wan2.2-a14b", steps=8))
    plain = generate(pipe, GenerateConfig(**kw), progress=False).frames
    cached = generate(pipe, GenerateConfig(cache="first-block:0.5", **kw), progress=False).frames
    assert diff(cached, plain) > 0
    assert np.array_equal(generate(pipe, GenerateConfig(**kw), progress=False).frames, plain)


# ---------------------------------------------------------------- ZeroScope
def test_zeroscope_equals_stock_text_to_video_pipeline_with_and_without_loras():
    """ZeroScope through the same `generate`: stock frames without LoRAs; with LoRAs (dense), the stock pipeline
    on weights with the LoRAs merged by hand (W + alpha/r B A)."""
    from smrabooth.backbones.zeroscope import UnetGenerateConfig
    from smrabooth.lora.unet import LOCATIONS, add_unet_adapter, remove_adapters, unet_lora_from_peft

    pipe = BACKBONES["zeroscope"].build_tiny()

    def stock():
        out = pipe("a V* ball", num_frames=3, height=64, width=64, num_inference_steps=4,
                   generator=torch.Generator().manual_seed(3), output_type="np").frames[0]
        return (np.clip(out, 0, 1) * 255).round().astype(np.uint8)

    cfg = UnetGenerateConfig(prompt="a V* ball", frames=3, height=64, width=64, steps=4, seed=3)
    plain = generate(pipe, cfg, progress=False).frames
    assert diff(plain, stock()) <= 1
    loras = []
    for seed, kind in enumerate(("subject", "motion")):
        params = add_unet_adapter(pipe.unet, kind, 4, 8.0, LOCATIONS[kind], seed=seed)
        for p in params:
            p.data = torch.randn(p.shape, generator=torch.Generator().manual_seed(seed)) * 0.05
        loras.append(unet_lora_from_peft(pipe.unet, kind, kind))
        remove_adapters(pipe.unet)
    dense = generate(pipe, UnetGenerateConfig(**{**cfg.__dict__, "injection": "dense"}), *loras,
                     progress=False).frames
    assert diff(dense, plain) > 5
    with torch.no_grad():
        for lora in loras:
            for m in lora.modules:
                a, b = lora.tensors[f"{m}.lora_A.weight"], lora.tensors[f"{m}.lora_B.weight"]
                pipe.unet.get_submodule(m).weight += lora.alpha / lora.rank * b @ a
    assert diff(dense, stock()) <= 1
