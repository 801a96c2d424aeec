"""This project's side of the parity harness: the tiny models and inputs (built here and handed to the authors'
side), and our trainers and sampler run on the authors' draws.

Our side runs the product's own entry points (`train_subject`, `train_motion`, `generate`) with the `official`
recipe; the harness only decides what they are given:
- the draws: every random choice our trainer makes with its generator (which image, which timestep index, the
  noise, the debiased loss's frame) is answered, in order, with the choice the authors' process made for the
  same sample (`Replay`); a draw of another kind, or one too many, stops the harness;
- the initial weights: the LoRA (A from their peft init, B the harness's small random values) and the SuRA
  projector are the authors' initial tensors, loaded right after our trainer creates its own;
- sizes and run length (tiny model, a few steps), the run folder, the cache folder.
What our code computes with them is recorded by wrapping, never replaced: the per-sample loss terms
(DataParallel.backward), the gradients and the lr at each optimizer step (AdamW.step), the MoRA window's decoded
frames and flows, and the sampler's latents.
"""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common as C

OFFICIAL_SCRIPTS = {"subject": "Wan2.1-T2V-1.3B-Subject.sh", "motion": "Wan2.1-T2V-1.3B-Motion.sh"}
SUBJECT_STEPS = 4  # optimizer steps of the subject run: one past their 3-step warm-up
MOTION_STEPS = 3  # steps of each motion phase (3 phase-1 steps use up their warm-up, as 50 do in their run)
SAMPLE_SIZE = {"height": 64, "width": 64, "num_frames": 9}
MODEL_ID = "parity-tiny"


# ---------------------------------------------------------------- the tiny models, written for both sides
def tiny_config():
    from smrabooth.models.tiny import TinyWanConfig

    d, v = C.DIT, C.VAE
    return TinyWanConfig(num_layers=d["num_layers"], num_attention_heads=d["num_heads"], attention_head_dim=d["head_dim"],
                         ffn_dim=d["ffn_dim"], text_dim=d["text_dim"], vae_base_dim=v["base_dim"],
                         vae_dim_mult=tuple(v["dim_mult"]), vae_num_res_blocks=v["num_res_blocks"], seed=C.SEED)


def build_pipeline():
    from smrabooth.models.tiny import build_tiny_wan_pipeline

    pipe = build_tiny_wan_pipeline(tiny_config())
    pipe.set_progress_bar_config(disable=True)
    return pipe


def searaft_config(info: dict):
    """Their spring-M settings (radius, iterations, scale, ...) at the tiny widths."""
    from smrabooth.models.searaft import SEARAFTConfig

    theirs = {k: v for k, v in info["searaft"].items() if k in SEARAFTConfig.__dataclass_fields__}
    return SEARAFTConfig(**{**theirs, **C.SEARAFT_SIZES})


def build_searaft(info: dict):
    from check_searaft_equivalence import randomise  # the random, realistic weights used for SEA-RAFT's own check

    from smrabooth.models.searaft import SEARAFT

    torch.manual_seed(C.SEED + 3)
    model = SEARAFT(searaft_config(info))
    randomise(model, C.SEED + 3)
    return model.eval().requires_grad_(False)


def build_dinov2():
    from transformers import Dinov2Config, Dinov2Model

    torch.manual_seed(C.SEED + 4)
    return Dinov2Model(Dinov2Config(**C.DINO)).eval().requires_grad_(False)


def prompt_embeddings(pipe, prompts) -> dict[str, torch.Tensor]:
    """umT5 (the tiny one) embeddings of each prompt, as our trainers and sampler compute them (512 tokens)."""
    out = {}
    for text in dict.fromkeys(prompts):
        emb, _ = pipe.encode_prompt(text, do_classifier_free_guidance=False, max_sequence_length=512, device="cpu")
        out[text] = emb.float()
    return out


def random_loras(info: dict, pipe) -> dict[str, dict[str, torch.Tensor]]:
    """A subject and a motion LoRA with random A and B, in the DiffSynth file format their loader and ours read,
    on their scripts' target modules and ranks (subject: the spatial flags of their subject script; motion: the
    temporal flags of their motion script)."""
    g = torch.Generator().manual_seed(C.SEED + 5)
    modules = {n: m for n, m in _their_linear_names(pipe).items()}
    loras = {}
    for kind, stage, prefix in (("subject", "subject", "spatial"), ("motion", "motion", "temporal")):
        args = info[stage]["args"]
        targets, rank = args[f"{prefix}_lora_target_modules"].split(","), args[f"{prefix}_lora_rank"]
        tensors = {}
        for name, (fan_in, fan_out) in modules.items():
            if any(name == t or name.endswith("." + t) for t in targets):
                tensors[f"{name}.lora_A.default.weight"] = torch.randn(rank, fan_in, generator=g) * 0.2
                tensors[f"{name}.lora_B.default.weight"] = torch.randn(fan_out, rank, generator=g) * 0.2
        loras[kind] = tensors
    return loras


def _their_linear_names(pipe) -> dict[str, tuple[int, int]]:
    """Their (original Wan) module names of our transformer's block linears -> (in, out) features."""
    from smrabooth.lora.convert import _TO_ORIGINAL

    out = {}
    for i, block in enumerate(pipe.transformer.blocks):
        for suffix, original in _TO_ORIGINAL.items():
            linear = block.get_submodule(suffix)
            out[f"blocks.{i}.{original}"] = (linear.in_features, linear.out_features)
    return out


def prepare(exchange: Path, info: dict) -> None:
    """Everything both sides read: models, prompt embeddings, inputs, LoRAs for sampling, and the run plan."""
    pipe = build_pipeline()
    C.save(exchange / "models" / "transformer.safetensors", pipe.transformer.state_dict())
    C.save(exchange / "models" / "vae.safetensors", pipe.vae.state_dict())
    build_dinov2().save_pretrained(exchange / "models" / "dinov2")
    torch.save(build_searaft(info).state_dict(), exchange / "models" / "searaft.pth")
    ci = info["combine_inference"]
    from smrabooth.sampling import PRESETS

    prompts = [C.SUBJECT_PROMPT, C.MOTION_PROMPT, ci["prompt"], ci["negative_prompt"],
               PRESETS["official"]["negative_prompt"]]
    embeds = prompt_embeddings(pipe, prompts)
    keys = {text: f"p{i}" for i, text in enumerate(embeds)}
    C.save(exchange / "prompts.safetensors", {keys[t]: e for t, e in embeds.items()}, keys)
    paths = C.write_inputs(exchange / "data")
    for kind, tensors in random_loras(info, pipe).items():
        C.save(exchange / "loras" / f"{kind}.safetensors", tensors)
    common = {"--num_epochs": "1", "--output_path": "./out", "--test_prompts": None}
    plan = {
        "subject": {"script": OFFICIAL_SCRIPTS["subject"], "flags": {
            **common, "--dataset_base_path": str(paths["subject"]),
            "--dataset_metadata_path": str(paths["subject"] / "metadata.csv"),
            "--dataset_repeat": str(SUBJECT_STEPS * info["subject"]["num_processes"] // C.SUBJECT_IMAGES)}},
        "motion": {"script": OFFICIAL_SCRIPTS["motion"], "flags": {
            **common, "--dataset_base_path": str(paths["videos"]),
            "--dataset_metadata_path": str(paths["motion"] / "metadata.csv"),
            "--height": str(C.MOTION_SIZE[0]), "--width": str(C.MOTION_SIZE[1]), "--num_frames": str(C.MOTION_FRAMES),
            "--dataset_repeat": str(MOTION_STEPS * info["motion"]["num_processes"])}},
        "sample": {"sizes": SAMPLE_SIZE},
    }
    (exchange / "plan.json").write_text(json.dumps(plan, indent=1))


# ---------------------------------------------------------------- replaying their draws in our trainers
class Replay:
    """While active, every `torch.randint` / `torch.randn` call made with a `generator=` (our trainers' draws) is
    answered from `queues`, in order: "index:<high>" -> ints, "noise" -> tensors (reshaped to the request).
    Draws of `passthrough` highs (DataParallel's per-sample seeds) go to torch. A draw nobody queued, or a queue
    left unused, is an error: the two sides would not be computing the same samples."""

    PASSTHROUGH = (2**62,)

    def __init__(self, queues: dict[str, list]):
        self.queues = {k: list(v) for k, v in queues.items()}

    def __enter__(self):
        self.real = (torch.randint, torch.randn)
        real_randint, real_randn = self.real

        def randint(*args, generator=None, **kw):
            if generator is None:
                return real_randint(*args, **kw)
            _, high, size = (0, *args[:2]) if len(args) == 2 else args[:3]
            if high in self.PASSTHROUGH:
                return real_randint(*args, generator=generator, **kw)
            values = [self._pop(f"index:{high}") for _ in range(int(torch.Size(size).numel()))]
            return torch.tensor(values, dtype=torch.int64).reshape(size)

        def randn(*size, generator=None, **kw):
            if generator is None:
                return real_randn(*size, **kw)
            shape = torch.Size(size[0] if len(size) == 1 and not isinstance(size[0], int) else size)
            value = self._pop("noise")
            if value.numel() != shape.numel():
                raise RuntimeError(f"replay: our trainer drew noise of shape {tuple(shape)}, theirs has "
                                   f"{tuple(value.shape)}")
            return value.reshape(shape).to(kw.get("dtype") or torch.float32)

        torch.randint, torch.randn = randint, randn
        return self

    def _pop(self, key: str):
        if not self.queues.get(key):
            raise RuntimeError(f"replay: our trainer drew '{key}' once more than the authors' processes did "
                               f"(queues: { {k: len(v) for k, v in self.queues.items()} })")
        return self.queues[key].pop(0)

    def __exit__(self, *exc):
        torch.randint, torch.randn = self.real
        left = {k: len(v) for k, v in self.queues.items() if v}
        if left and exc[0] is None:
            raise RuntimeError(f"replay: our trainer did not use all of the authors' draws: {left} left")


@contextlib.contextmanager
def patched(obj, name: str, value):
    old = getattr(obj, name)
    setattr(obj, name, value)
    try:
        yield old
    finally:
        setattr(obj, name, old)


# their adapter names -> ours, per stage: their subject LoRA is peft's "spatial_lora" (their subject script passes
# the spatial flags), their motion LoRAs "spatial_lora" and "temporal_lora"; ours "subject", "spatial", "motion"
ADAPTERS = {"subject": {"spatial_lora": "subject"}, "motion": {"spatial_lora": "spatial", "temporal_lora": "motion"}}


def their_name_to_ours(name: str, adapters: dict[str, str]) -> str:
    """'blocks.0.self_attn.q.lora_A.spatial_lora.weight' -> 'blocks.0.attn1.to_q.lora_A.subject.weight'."""
    from smrabooth.lora.convert import _TO_DIFFUSERS

    parts = name.split(".")
    at = next(i for i, p in enumerate(parts) if p.startswith("lora_"))
    module, lora, adapter = ".".join(parts[2:at]), parts[at], parts[at + 1]
    return f"blocks.{parts[1]}.{_TO_DIFFUSERS[module]}.{lora}.{adapters[adapter]}.weight"


class Recorder:
    """What our trainer computes, by wrapping: the loss terms of each sample, and at each optimizer step the lr,
    the gradients and the LoRA after it (names without the adapter)."""

    def __init__(self, transformer):
        self.transformer = transformer
        self.samples, self.steps, self.inputs = [], [], []

    @contextlib.contextmanager
    def active(self):
        from smrabooth.train.distributed import DataParallel

        rec = self
        real_backward, real_step = DataParallel.backward, torch.optim.AdamW.step

        def backward(self, step, generator, params, compute_losses, batched=False):
            # one sample a call, so that each sample's losses are recorded: a batched trainer (the subject's, whose
            # batch is one forward) gets its samples one at a time (the same LoRA to float rounding: tests)
            def recorded(step, gen):
                losses = compute_losses(step, [gen]) if batched else compute_losses(step, gen)
                rec.samples.append({k: float(v.detach()) for k, v in losses.items()})
                return losses
            return real_backward(self, step, generator, params, recorded)

        def adamw_step(opt, *a, **k):
            names = {id(p): n for n, p in rec.transformer.named_parameters() if "lora_" in n}
            record = {"lr": [g["lr"] for g in opt.param_groups], "grads": {}, "none": []}
            for g in opt.param_groups:
                for p in g["params"]:
                    if id(p) not in names:
                        continue
                    (record["none"].append(names[id(p)]) if p.grad is None
                     else record["grads"].__setitem__(names[id(p)], p.grad.detach().float().clone()))
            out = real_step(opt, *a, **k)
            record["after"] = {names[id(p)]: p.detach().float().clone() for g in opt.param_groups for p in g["params"]
                               if id(p) in names}
            record["param_dtypes"] = sorted({str(p.dtype) for g in opt.param_groups for p in g["params"]
                                             if id(p) in names})
            record["state_dtypes"] = sorted({str(v.dtype) for p, s in opt.state.items() if id(p) in names
                                             for key, v in s.items() if torch.is_tensor(v) and key != "step"})
            rec.steps.append(record)
            return out

        def pre_hook(module, args, kwargs):
            hidden = kwargs.get("hidden_states", args[0] if args else None)
            timestep = kwargs.get("timestep", args[1] if len(args) > 1 else None)
            rec.inputs.append({"latents": hidden.detach().float().clone(), "timestep": timestep.detach().float()})

        handle = self.transformer.register_forward_pre_hook(pre_hook, with_kwargs=True)
        DataParallel.backward, torch.optim.AdamW.step = backward, adamw_step
        try:
            yield self
        finally:
            DataParallel.backward, torch.optim.AdamW.step = real_backward, real_step
            handle.remove()


def load_initial_lora(transformer, adapter: str, init: dict[str, torch.Tensor], adapters: dict[str, str]) -> int:
    """Their initial LoRA of the adapter that is our `adapter` copied into it; returns how many tensors."""
    wanted = {n: v for n, v in ((their_name_to_ours(k, adapters), v) for k, v in init.items() if "lora_" in k)
              if f".{adapter}." in n}
    done = 0
    with torch.no_grad():
        for name, p in transformer.named_parameters():
            if name in wanted:
                p.copy_(wanted[name].to(p.dtype))
                done += 1
    if done != len(wanted):
        raise RuntimeError(f"their initial LoRA has {len(wanted)} tensors, our adapter '{adapter}' took {done}")
    return done


def their_samples(records: list[tuple[dict, dict]]) -> list[tuple[dict, dict, int]]:
    """Their samples in our trainer's order: step by step, process 0's sample then process 1's, with the data
    index each process read for it."""
    per_rank = []
    for tensors, meta in records:
        ids = [e["data_id"] for e in meta["events"]]
        rows = []
        for i, sample in enumerate(meta["samples"]):
            rows.append((sample, {k.split(".", 1)[1]: v for k, v in tensors.items() if k.startswith(f"sample{i}.")},
                         ids[i] if i < len(ids) else None))
        per_rank.append(rows)
    out = []
    for step in range(max(len(r) for r in per_rank)):
        out += [rows[step] for rows in per_rank if step < len(rows)]
    return out


# ---------------------------------------------------------------- our runs
def recording_sample_timesteps(real, draws: list):
    """Our trainer's `sample_timesteps`, recording the sigma and flow-loss weight it hands each sample."""
    def sample_timesteps(*a, **k):
        sigma, weight = real(*a, **k)
        draws.append({"sigma": float(sigma.reshape(-1)[0]), "weight": float(weight.reshape(-1)[0])})
        return sigma, weight
    return sample_timesteps

def load_records(folder: Path) -> list[tuple[dict, dict]]:
    return [C.load(p) for p in sorted(folder.glob("rank*.safetensors"))]


def config_overrides(config_cls, dtype: str) -> dict:
    """Our settings that follow the base model's dtype in their code. In the fp32 run their pipeline is float32, so
    peft's LoRA and AdamW's states are float32 and their timestep's cast to the pipeline dtype rounds nothing:
    ours get lora_dtype fp32 and timestep_rounding none there. The bf16 run keeps the recipe's own values."""
    fields = config_cls.__dataclass_fields__
    wanted = {"lora_dtype": "fp32", "timestep_rounding": "none"} if dtype == "fp32" else {}
    return {k: v for k, v in wanted.items() if k in fields}


def pipeline_for(dtype: str):
    pipe = build_pipeline()
    if dtype == "bf16":
        pipe.transformer.to(torch.bfloat16)
        pipe.vae.to(torch.bfloat16)
    return pipe


def run_subject(exchange: Path, th: dict, work: Path, dtype: str = "fp32") -> dict:
    """Our `train_subject` (official recipe) on their draws (`th`: compare.their_stage); returns what it computed."""
    import smrabooth.train.subject as S
    from smrabooth.backbones.wan21 import Wan21
    from smrabooth.models.dinov2 import load_dinov2
    from smrabooth.recipes import NUM_TRAIN_TIMESTEPS

    init, samples = th["init"], th["samples"]
    queues = {f"index:{C.SUBJECT_IMAGES}": [s[2] for s in samples],
              f"index:{NUM_TRAIN_TIMESTEPS}": [s[0]["timestep_id"] for s in samples],
              "noise": [C.noise(s[0]["noise_seed"], s[0]["noise_shape"]) for s in samples]}
    pipe = pipeline_for(dtype)
    encoder = load_dinov2(str(exchange / "models" / "dinov2"))
    cfg = S.SubjectTrainConfig.from_recipe(
        "official", model=MODEL_ID, data=str(exchange / "data" / "subject" / "dog"), out=str(work / "run"),
        steps=SUBJECT_STEPS, save_dtype="fp32", cache_dir=str(work / "cache"), gradient_checkpointing=False,
        **config_overrides(S.SubjectTrainConfig, dtype))
    captured = {"tokens": [], "latents": [], "draws": []}
    real_add, real_projector = S.add_lora_adapter, S.build_projector
    real_tokens, real_encode = S.tokens_on_grid, Wan21.encode_image

    def add_lora_adapter(transformer, name, *a, **k):
        params = real_add(transformer, name, *a, **k)
        load_initial_lora(transformer, name, init, ADAPTERS["subject"])
        return params

    def build_projector(*a, **k):
        projector = real_projector(*a, **k)
        projector.load_state_dict({k[len("projector.0."):]: v for k, v in init.items() if k.startswith("projector.")})
        return projector

    def tokens_on_grid(*a, **k):
        out = real_tokens(*a, **k)
        captured["tokens"].append(out[0].float().clone())
        return out

    def encode_image(self, *a, **k):  # the trainer encodes through its backbone (Wan21.encode_image)
        out = real_encode(self, *a, **k)
        captured["latents"].append(out.float().clone())
        return out

    recorder = Recorder(pipe.transformer)
    with contextlib.ExitStack() as stack:
        for name, fn in (("add_lora_adapter", add_lora_adapter), ("build_projector", build_projector),
                         ("tokens_on_grid", tokens_on_grid),
                         ("sample_timesteps", recording_sample_timesteps(S.sample_timesteps, captured["draws"]))):
            stack.enter_context(patched(S, name, fn))
        stack.enter_context(patched(Wan21, "encode_image", encode_image))
        stack.enter_context(recorder.active())
        stack.enter_context(Replay(queues))
        S.train_subject(cfg, pipe, encoder, model_id=MODEL_ID, progress=False)
    return {"samples": recorder.samples, "steps": recorder.steps, "inputs": recorder.inputs, **captured}


def run_motion(exchange: Path, th: dict, work: Path, info: dict, dtype: str = "fp32", phase1_only: bool = False) -> dict:
    """Our `train_motion` (official recipe) on their draws. Our recipe decides which of their phases it runs:
    a recipe with a spatial phase replays their phase-1 samples too; one without replays phase 2 only. Our MoRA
    reads the reference flows their window read (documented difference: the index their code reads them at,
    docs/parity.md); everything else is ours."""
    import smrabooth.train.motion as M
    from smrabooth.backbones.wan21 import Wan21
    from smrabooth.models.searaft import load_searaft
    from smrabooth.recipes import NUM_TRAIN_TIMESTEPS

    init, samples = th["init"], th["samples"]
    base = M.MotionTrainConfig.from_recipe("official")
    two_phase = base.spatial_steps > 0
    if phase1_only and not two_phase:  # our recipe has no phase 1: nothing to run
        return {"samples": [], "steps": [], "inputs": [], "two_phase": False}
    used = [s for s in samples if two_phase or s[0]["train_type"] == "Motion_1"]
    if phase1_only:
        used = [s for s in used if s[0]["train_type"] == "Motion_0"]
    latents = next(s[0]["noise_shape"][2] for s in samples if s[0]["train_type"] == "Motion_1")
    queues = {"index:1": [0] * len(used), f"index:{NUM_TRAIN_TIMESTEPS}": [s[0]["timestep_id"] for s in used],
              f"index:{latents}": [s[0]["debias_frame"] for s in used if "debias_frame" in s[0]],
              f"index:{C.MOTION_FRAMES}": [s[0]["frame"] for s in used if "frame" in s[0]],
              "noise": [C.noise(s[0]["noise_seed"], s[0]["noise_shape"]) for s in used]}
    ref_starts = [s[0]["ref_start"] for s in used if s[0]["train_type"] == "Motion_1"]
    steps = {"steps": 2 * MOTION_STEPS, "spatial_steps": MOTION_STEPS, "temporal_steps": MOTION_STEPS} if two_phase \
        else {"steps": MOTION_STEPS}
    if phase1_only:
        steps["steps"] = MOTION_STEPS
    cfg = M.MotionTrainConfig.from_recipe(
        "official", model=MODEL_ID, data=str(exchange / "data" / "motion" / "video" / "walk"), out=str(work / "run"),
        height=C.MOTION_SIZE[0], width=C.MOTION_SIZE[1], frames=C.MOTION_FRAMES, save_dtype="fp32",
        cache_dir=str(work / "cache"), gradient_checkpointing=False, flow_model=str(exchange / "models" / "searaft.pth"),
        vae_checkpointing="none",  # how the decode is computed (memory), not what: the CPU has the memory
        **steps, **config_overrides(M.MotionTrainConfig, dtype))
    pipe = pipeline_for(dtype)
    flow_model = load_searaft(str(exchange / "models" / "searaft.pth"), config=searaft_config(info))
    captured = {"decoded": [], "ref_flows": [], "pred_flows": [], "reference_flows": [], "draws": [],
                "window_starts": []}
    real = {n: getattr(M, n) for n in ("add_lora_adapter", "add_second_lora_adapter", "decode_window",
                                       "window_ref_flows", "reference_flows", "mora_loss")}
    def lora_loader(fn_name):
        def add(transformer, name, *a, **k):
            params = real[fn_name](transformer, name, *a, **k)
            load_initial_lora(transformer, name, init, ADAPTERS["motion"])
            return params
        return add

    def decode_window(*a, **k):
        captured["window_starts"].append(int(a[2] if len(a) > 2 else k["start"]))
        frames = real["decode_window"](*a, **k)
        unit = frames if cfg.mora_frame_range == "matched" else (frames + 1) / 2  # theirs are recorded in [0, 1]
        captured["decoded"].append(unit.detach().float().clone())
        return frames

    def window_ref_flows(flows, *a, **k):
        ours = real["window_ref_flows"](flows, *a, **k)
        captured["ref_flows"].append(ours.float().clone())
        start = ref_starts.pop(0)
        return flows[start: start + len(ours)]

    def reference_flows(*a, **k):
        out = real["reference_flows"](*a, **k)
        captured["reference_flows"].append(out.float().clone())
        return out

    def mora_loss(pred_frames, ref_flows, flow_fn, *a, **k):
        def recorded_flow_fn(x, y):
            flows = flow_fn(x, y)
            captured["pred_flows"].append(flows.detach().float().clone())
            return flows
        return real["mora_loss"](pred_frames, ref_flows, recorded_flow_fn, *a, **k)

    recorder = Recorder(pipe.transformer)
    with contextlib.ExitStack() as stack:
        for name, fn in (("add_lora_adapter", lora_loader("add_lora_adapter")),
                         ("add_second_lora_adapter", lora_loader("add_second_lora_adapter")),
                         ("decode_window", decode_window), ("window_ref_flows", window_ref_flows),
                         ("reference_flows", reference_flows), ("mora_loss", mora_loss),
                         ("sample_timesteps", recording_sample_timesteps(M.sample_timesteps, captured["draws"]))):
            stack.enter_context(patched(M, name, fn))
        # the trainer decodes MoRA's window through its backbone (Wan21.decode_window calls align.mora's)
        stack.enter_context(patched(Wan21, "decode_window",
                                    lambda self, *a, **k: decode_window(*a, **k)))
        stack.enter_context(recorder.active())
        stack.enter_context(Replay(queues))
        M.train_motion(cfg, pipe, flow_model, model_id=MODEL_ID, flow_id="parity-searaft", progress=False)
    # our decode of the very latents their MoRA decoded (the decode alone, whatever came before it)
    captured["decode_of_theirs"] = []
    with torch.no_grad():
        for _sample, ts, _ in samples:
            if "window" in ts and ts["window"].shape[2] == cfg.window:
                frames = real["decode_window"](pipe.vae, ts["window"].to(pipe.vae.dtype), 0, cfg.window,
                                               cfg.drop_frames, checkpoint="none", tiling=cfg.mora_decode)
                captured["decode_of_theirs"].append(frames[0].float())
    return {"samples": recorder.samples, "steps": recorder.steps, "inputs": recorder.inputs, "two_phase": two_phase,
            **captured}


def run_sample(exchange: Path, their_meta: dict, info: dict, trained: list[Path] | None) -> dict:
    """Our `generate` with the `official` preset, the same LoRA files and seed as their combine_inference.py run,
    at the same tiny size; and whether our loader reads the LoRA files their trainers wrote (`trained`)."""
    import smrabooth.sampling as G
    from smrabooth.errors import SmraboothError
    from smrabooth.lora.files import load_lora

    pipe = build_pipeline()
    sizes = {"height": SAMPLE_SIZE["height"], "width": SAMPLE_SIZE["width"], "frames": SAMPLE_SIZE["num_frames"]}
    cfg = G.GenerateConfig(**{**G.PRESETS["official"], **sizes}, prompt=info["combine_inference"]["prompt"],
                           seed=int(their_meta["call"]["seed"]))
    out = {"negative_prompt": cfg.negative_prompt, "load_errors": None if trained is None else []}
    real_prepare, real_decode = pipe.prepare_latents, G.decode_latents

    def prepare_latents(*a, **k):
        out["noise"] = real_prepare(*a, **k).float().clone()
        return out["noise"]

    def decode_latents(p, latents):
        out["latents"] = latents.float().clone()
        out["video"] = real_decode(p, latents)
        return out["video"]

    pipe.prepare_latents = prepare_latents
    with patched(G, "decode_latents", decode_latents):
        G.generate(pipe, cfg, load_lora(exchange / "loras" / "subject.safetensors"),
                   load_lora(exchange / "loras" / "motion.safetensors"), progress=False)
    for path in trained or []:
        try:
            load_lora(path)
        except SmraboothError as e:
            out["load_errors"].append(f"{path.name}: {str(e).splitlines()[0][:120]}")
    return out
