"""The authors' side of the parity harness: THEIR code, from their checkout, in their pinned environment.

Run by scripts/check_official_parity.py, never by hand (it needs the exchange folder that script writes):

    torchrun --nproc_per_node N theirs.py train  --checkout C --exchange X --stage subject|motion --dtype fp32|bf16
    python theirs.py sample --checkout C --exchange X
    python theirs.py info   --checkout C --exchange X

`train` executes their examples/wanvideo/model_training/train.py as a script (runpy, under `__main__`) with the
flags of their Wan2.1-T2V-1.3B-Subject.sh / -Motion.sh, parsed by their own argument parser, on N CPU processes
(N = their --num_processes; gloo). `sample` executes their combine_inference.py. Nothing of theirs is copied:
what this file changes is listed here, and each change is about where things come from, not what is computed:

- models: `WanVideoPipeline.from_pretrained` returns their pipeline class holding their WanModel and
  WanVideoVAE classes with the harness's tiny random weights (the DiT's diffusers keys go through their own
  `from_diffusers` converter; the VAE's through diffusers' Wan converter, inverted). Their projector is rebuilt
  with their `build_mlp` at the tiny widths (their pipeline hard-codes the 1.3B's 1536); its middle width is
  their `projector_dim`.
- DINOv2: `torch.hub.load` (a download) returns the tiny transformers Dinov2Model behind the hub model's
  interface (`forward_features(x)["x_norm_patchtokens"]`, `pos_embed`, `embed_dim`); their `load_encoders`
  still resamples its position table with timm.
- SEA-RAFT: their RAFT class with their spring-M settings, narrowed to the tiny widths (common.SEARAFT_SIZES),
  loading the harness's random checkpoint from the path their code expects; torchvision's ImageNet ResNet
  (a download whose weights the checkpoint overwrites anyway) is not fetched.
- text: their prompter returns the harness's embeddings of each prompt (the umT5 is not compared).
- noise: their `generate_noise` draws from a seed the harness records (so the other side can draw the same).
- run length and sizes: one epoch, dataset_repeat so each phase has a few steps; motion clips 256x256; their
  --test_prompts sampling at epoch end is skipped; inference at the tiny size; data paths point at the
  harness's folders. Everything else (ranks, targets, lr, weights, schedules, SuRA/MoRA settings, dtypes of
  their code) is read from their files as they stand.
- dtype: `--dtype bf16` runs as their scripts do (bfloat16 pipeline); `fp32` builds the same pipeline in
  float32 so the comparison resolves float rounding (the one change of a setting, stated in every report).
Records (losses, gradients, draws, LoRA values) go to EXCHANGE/theirs/<tag>/rank<r>.safetensors.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import runpy
import shlex
import shutil
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common as C

SEARAFT_PATH = "./ckpts/SEA-RAFT/Tartan-C-T-TSKH-spring540x960-M/Tartan-C-T-TSKH-spring540x960-M.pth"
REC: dict = {"samples": [], "steps": [], "events": []}
STATE: dict = {"pending": {}, "pipe": None, "rank": int(os.environ.get("RANK", "0")), "noise_calls": 0}


# ---------------------------------------------------------------- reading their files
def read_launch(sh: Path) -> tuple[int, list[str]]:
    """(their --num_processes, the arguments their script passes to train.py), from the shell script."""
    text = sh.read_text().replace("\\\n", " ")
    tokens = shlex.split(text[text.index("accelerate launch"):])  # the command runs to the end of the script
    at = next(i for i, t in enumerate(tokens) if t.endswith("train.py"))
    launch, argv = tokens[:at], tokens[at + 1:]
    return int(launch[launch.index("--num_processes") + 1]), argv


def set_flag(argv: list[str], name: str, value: str | None) -> list[str]:
    """argv with `name` set to `value` (None: removed)."""
    out, skip = [], False
    for i, t in enumerate(argv):
        if skip:
            skip = False
            continue
        if t == name:
            skip = i + 1 < len(argv) and not argv[i + 1].startswith("--")
            continue
        out.append(t)
    return out + ([name, value] if value is not None else [])


def script_assignments(path: Path) -> dict:
    """Module-level `name = <constant>` of a script, and the keyword constants of its calls (name -> value)."""
    tree = ast.parse(path.read_text())
    found = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    found[target.id] = node.value.value
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            for kw in node.keywords:
                if kw.arg and isinstance(kw.value, ast.Constant):
                    found.setdefault(kw.arg, kw.value.value)
    return found


# ---------------------------------------------------------------- the tiny models, in their classes
def vae_key_map(their_keys) -> dict:
    """diffusers VAE key -> their (original Wan) key, by running diffusers' own converter on their key names."""
    from diffusers.loaders.single_file_utils import convert_wan_vae_to_diffusers

    converted = convert_wan_vae_to_diffusers({k: k for k in their_keys})
    if sorted(converted.values()) != sorted(their_keys):
        raise SystemExit("diffusers' Wan VAE converter does not map every key of their VAE one to one")
    return {d: o for d, o in converted.items()}


def build_pipe(exchange: Path, dtype: torch.dtype, device: str = "cpu"):
    from diffsynth.models.wan_video_dit import WanModel
    from diffsynth.models.wan_video_vae import VideoVAE_, WanVideoVAE
    from diffsynth.pipelines.wan_video_new import WanVideoPipeline, build_mlp

    pipe = WanVideoPipeline(device=device, torch_dtype=dtype)
    sd, _ = C.load(exchange / "models" / "transformer.safetensors")
    theirs, _ = WanModel.state_dict_converter().from_diffusers(sd)
    d = C.DIT
    dit = WanModel(dim=d["num_heads"] * d["head_dim"], in_dim=16, ffn_dim=d["ffn_dim"], out_dim=16,
                   text_dim=d["text_dim"], freq_dim=d["freq_dim"], eps=1e-6, patch_size=(1, 2, 2),
                   num_heads=d["num_heads"], num_layers=d["num_layers"], has_image_input=False)
    if len(theirs) != len(sd):
        raise SystemExit(f"their from_diffusers converted {len(theirs)} of {len(sd)} DiT tensors")
    dit.load_state_dict(theirs, strict=True)
    pipe.dit = dit.to(dtype)

    vae = WanVideoVAE(z_dim=16)
    v = C.VAE
    vae.model = VideoVAE_(dim=v["base_dim"], z_dim=16, dim_mult=v["dim_mult"], num_res_blocks=v["num_res_blocks"],
                          attn_scales=[], temperal_downsample=[False, True, True]).eval().requires_grad_(False)
    vsd, _ = C.load(exchange / "models" / "vae.safetensors")
    keys = vae_key_map(list(vae.model.state_dict()))
    vae.model.load_state_dict({keys[k]: t for k, t in vsd.items()}, strict=True)
    pipe.vae = vae.to(dtype)
    real_decode = vae.decode

    def decode(hidden_states, *a, **k):  # MoRA's decode of the predicted window: recorded with its output
        video = real_decode(hidden_states, *a, **k)
        if video.requires_grad:
            STATE["pending"].setdefault("mora", {}).update({"window": f32(hidden_states), "decoded": f32(video)})
        return video

    vae.decode = decode
    pipe.height_division_factor = pipe.width_division_factor = vae.upsampling_factor * 2

    embeds, meta = C.load(exchange / "prompts.safetensors")

    def encode_prompt(prompt, positive=True, device=device):
        return embeds[meta[prompt]].to(device=device, dtype=dtype)

    pipe.prompter.encode_prompt = encode_prompt
    # their pipeline's projector is hard-wired to 1536-2048-1536 (the 1.3B and ViT-g): the tiny widths, their MLP
    pipe.projectors = torch.nn.ModuleList([build_mlp(dit.dim, pipe.projector_dim, C.DINO["hidden_size"])]).to(dtype)
    STATE["pipe"] = pipe
    return pipe


class HubDinoV2(torch.nn.Module):
    """The tiny transformers DINOv2 behind the interface of facebookresearch/dinov2's hub model, as far as their
    code uses it: `forward_features(x)["x_norm_patchtokens"]` (tokens after the final norm, without the class
    token), `pos_embed` (the position table, which their loader resamples in place), `embed_dim`, `head`."""

    def __init__(self, folder: Path):
        super().__init__()
        from transformers import Dinov2Model

        self.model = Dinov2Model.from_pretrained(str(folder)).eval()
        self.embed_dim = self.model.config.hidden_size
        self.head = torch.nn.Identity()

    @property
    def pos_embed(self):
        return self.model.embeddings.position_embeddings

    def forward_features(self, x):
        hidden = self.model(pixel_values=x).last_hidden_state
        return {"x_norm_patchtokens": hidden[:, 1:]}


# ---------------------------------------------------------------- patches: where things come from
def install(checkout: Path, exchange: Path, dtype: torch.dtype) -> None:
    sys.path.insert(0, str(checkout))
    import torchvision.models as tvm

    class _NoImageNet:  # their ResNet init copies ImageNet weights (a download) that the checkpoint overwrites
        def __init__(self, *a, **k):
            pass

        def state_dict(self):
            return {}

    tvm.resnet18 = tvm.resnet34 = _NoImageNet

    import importlib

    # `import diffsynth.utils.x as y` would follow the package attribute `utils`, which their __init__ rebinds to
    # diffsynth.models.utils: modules are taken by their full names
    dutils = importlib.import_module("diffsynth.utils")
    enc = importlib.import_module("diffsynth.utils.utils_encoder")
    from diffsynth.pipelines.wan_video_new import WanVideoPipeline

    WanVideoPipeline.from_pretrained = staticmethod(lambda torch_dtype=None, device=None, **kw: build_pipe(
        exchange, dtype, "cpu"))
    WanVideoPipeline.get_vram = lambda self: 1e6  # CPU: no CUDA memory to ask about (their GPUs had room for all)
    torch.hub.load = lambda repo, name, *a, **k: HubDinoV2(exchange / "models" / "dinov2")

    original_init = enc.SEARAFT_FlowProcessor._init_config

    def init_config(self):
        original_init(self)
        for k, value in C.SEARAFT_SIZES.items():
            setattr(self, k, value)

    enc.SEARAFT_FlowProcessor._init_config = init_config
    original_load = enc.SEARAFT_FlowProcessor._load_model

    def load_model(self, checkpoint_path, checkpoint_url):
        model = original_load(self, checkpoint_path, checkpoint_url)
        saved = torch.load(SEARAFT_PATH, map_location="cpu", weights_only=True)
        mine = model.state_dict()
        if set(saved) != set(mine) or any(not torch.equal(saved[k].to(mine[k].dtype), mine[k]) for k in saved):
            raise SystemExit("their SEA-RAFT did not load every tensor of the harness's checkpoint (load_ckpt is not "
                             "strict)")
        return model

    enc.SEARAFT_FlowProcessor._load_model = load_model

    def generate_noise(self, shape, seed=None, rand_device="cpu", rand_torch_dtype=torch.float32, device=None,
                       torch_dtype=None):
        if seed is None:  # training: a recorded seed instead of the global generator
            seed = C.SEED * 1000 + STATE["rank"] * 100 + STATE["noise_calls"]
            STATE["noise_calls"] += 1
            STATE["pending"]["noise_seed"] = seed
        generator = torch.Generator(rand_device).manual_seed(seed)
        noise = torch.randn(shape, generator=generator, device=rand_device, dtype=rand_torch_dtype)
        return noise.to(dtype=torch_dtype or self.torch_dtype, device=device or self.device)

    dutils.BasePipeline.generate_noise = generate_noise


# ---------------------------------------------------------------- recording
def f32(t):
    return t.detach().float().cpu().clone()


def install_recorders() -> None:
    import importlib

    tu = importlib.import_module("diffsynth.trainers.utils")
    ul = importlib.import_module("diffsynth.utils.utils_loss")
    wvn = importlib.import_module("diffsynth.pipelines.wan_video_new")
    from diffsynth.pipelines.wan_video_new import WanVideoPipeline

    real_randint = torch.randint

    def randint(*args, **kwargs):
        value = real_randint(*args, **kwargs)
        caller = sys._getframe(1).f_code.co_name
        if caller in ("training_loss", "forward_preprocess"):
            STATE["pending"].setdefault(caller, []).append(int(value.reshape(-1)[0]))
        return value

    torch.randint = randint

    real_loss = WanVideoPipeline.training_loss

    def training_loss(self, **inputs):
        sample = {"train_type": inputs.get("train_type"), "rank": STATE["rank"]}
        sample["window_start"] = getattr(wvn, "global_window_start", 0)
        noisy = [None]  # z_t, as their add_noise returns it (training_loss keeps it in its own kwargs)
        real_add = self.scheduler.add_noise
        real_weight = self.scheduler.training_weight

        def add_noise(original, noise, timestep):
            sample["timestep"] = float(timestep)
            probe = real_add(torch.zeros(1), torch.ones(1), timestep)
            sample["sigma"] = float(probe)
            noisy[0] = real_add(original, noise, timestep)
            return noisy[0]

        def training_weight(timestep):
            w = real_weight(timestep)
            sample["weight"] = float(w)
            return w

        self.scheduler.add_noise, self.scheduler.training_weight = add_noise, training_weight
        try:
            out = real_loss(self, **inputs)
        finally:
            self.scheduler.add_noise, self.scheduler.training_weight = real_add, real_weight
        sample["window_start_after"] = getattr(wvn, "global_window_start", 0)
        pending, STATE["pending"] = STATE["pending"], {}
        draws = pending.get("training_loss", [])
        sample["timestep_id"] = draws[0]
        if sample["train_type"] == "Motion_1":
            sample["debias_frame"] = draws[1]
        if pending.get("forward_preprocess"):
            sample["frame"] = pending["forward_preprocess"][0]
        sample["noise_seed"] = pending.get("noise_seed")
        sample["noise_shape"] = list(inputs["noise"].shape)
        tensors = {"input_latents": f32(inputs["input_latents"]), "latents": f32(noisy[0]),
                   "context": f32(inputs["context"])}
        if sample["train_type"] == "Subject":
            loss, proj, _ = out
            sample["losses"] = {"region": float(loss), "sura": float(proj)}
            tensors["zs"] = f32(inputs["zs"][0])
        elif sample["train_type"] == "Motion_0":
            sample["losses"] = {"flow": float(out)}
        else:
            temporal, flow = out
            sample["losses"] = {"flow+debiased": float(temporal), "mora": float(flow)}
            tensors.update({k: v for k, v in pending.get("mora", {}).items()})
        REC["samples"].append((sample, tensors))
        return out

    WanVideoPipeline.training_loss = training_loss

    real_flow_loss = ul.flow_loss

    def flow_loss(flow_tilde_list, flow_list):
        STATE["pending"].setdefault("mora", {}).update({"pred_flows": f32(flow_tilde_list), "ref_flows": f32(flow_list)})
        return real_flow_loss(flow_tilde_list, flow_list)

    ul.flow_loss = flow_loss

    real_preprocess = tu.preprocess_raw_image

    def preprocess_raw_image(x, pil_img, enc_type):
        out = real_preprocess(x, pil_img, enc_type)
        STATE["pending"]["dino_input"] = f32(out)
        return out

    tu.preprocess_raw_image = preprocess_raw_image

    real_video_flow = tu.SEARAFT_FlowProcessor.video_flow

    def video_flow(self, video_frames, device):
        f_list, viz = real_video_flow(self, video_frames, device)
        REC.setdefault("reference_flows", f32(torch.stack(f_list)))
        return f_list, viz

    tu.SEARAFT_FlowProcessor.video_flow = video_flow

    real_getitem = tu.VideoDataset.__getitem__

    def getitem(self, data_id):
        REC["events"].append({"data_id": int(data_id) % len(self.data), "rank": STATE["rank"]})
        return real_getitem(self, data_id)

    tu.VideoDataset.__getitem__ = getitem

    real_launch = tu.launch_training_task

    def launch_training_task(dataset, model, *args, **kwargs):
        """Before their loop: the LoRA (A and B) and the projector get the harness's seeded initial values
        (common.initial_value: B small but not 0), which the other side loads too."""
        dit = model.pipe.dit
        init = {}
        with torch.no_grad():
            for name, p in sorted(dit.named_parameters()):
                if "lora_" in name:
                    p.copy_(C.initial_value(name, p.shape).to(p.dtype))
                    init[name] = f32(p)
            for name, p in model.pipe.projectors.named_parameters():
                p.copy_(C.initial_value(f"projector.{name}", p.shape).to(p.dtype))
                init[f"projector.{name}"] = f32(p)
        REC["init"] = init
        REC["active_adapters"] = sorted({f"{type(m).__name__}:{','.join(m.active_adapters)}"
                                         for m in dit.modules() if hasattr(m, "active_adapters")
                                         and hasattr(m, "lora_A")})
        out = real_launch(dataset, model, *args, **kwargs)
        if model.pipe.dit is not None and STATE["rank"] == 0:
            REC["final"] = {n: f32(p) for n, p in model.pipe.dit.named_parameters() if "lora_" in n}
        return out

    tu.launch_training_task = launch_training_task

    real_step = torch.optim.AdamW.step

    def step(self, *args, **kwargs):
        names = {id(p): n for n, p in STATE["pipe"].dit.named_parameters()}
        record = {"lr": [g["lr"] for g in self.param_groups], "grads": {}, "none": []}
        for group in self.param_groups:
            for p in group["params"]:
                name = names.get(id(p), "?")
                if p.grad is None:
                    record["none"].append(name)
                else:
                    record["grads"][name] = f32(p.grad)
        out = real_step(self, *args, **kwargs)
        record["after"] = {names.get(id(p), "?"): f32(p) for g in self.param_groups for p in g["params"]}
        record["param_dtypes"] = sorted({str(p.dtype) for g in self.param_groups for p in g["params"]})
        record["state_dtypes"] = sorted({str(v.dtype) for s in self.state.values() for k, v in s.items()
                                         if torch.is_tensor(v) and k != "step"})
        REC["steps"].append(record)
        return out

    torch.optim.AdamW.step = step


def save_records(out: Path) -> None:
    """One file per process: samples (their draws, inputs and losses) and, from process 0, optimizer steps."""
    rank = STATE["rank"]
    tensors, meta = {}, {"rank": rank, "samples": [], "steps": [], "events": REC["events"],
                         "active_adapters": REC.get("active_adapters", [])}
    for i, (sample, ts) in enumerate(REC["samples"]):
        meta["samples"].append(sample)
        tensors.update({f"sample{i}.{k}": v for k, v in ts.items()})
    if rank == 0:
        for i, record in enumerate(REC["steps"]):
            meta["steps"].append({k: record[k] for k in ("lr", "none", "param_dtypes", "state_dtypes")})
            tensors.update({f"step{i}.grad.{k}": v for k, v in record["grads"].items()})
            tensors.update({f"step{i}.after.{k}": v for k, v in record["after"].items()})
        tensors.update({f"init.{k}": v for k, v in REC.get("init", {}).items()})
        tensors.update({f"final.{k}": v for k, v in REC.get("final", {}).items()})
        if "reference_flows" in REC:
            tensors["reference_flows"] = REC["reference_flows"]
    C.save(out / f"rank{rank}.safetensors", tensors, meta)


# ---------------------------------------------------------------- the three modes
def run_train(args) -> None:
    plan = json.loads((args.exchange / "plan.json").read_text())[args.stage]
    sh = args.checkout / plan["script"]
    _, argv = read_launch(sh)
    for name, value in plan["flags"].items():
        argv = set_flag(argv, name, value)
    work = args.exchange / "theirs" / f"{args.stage}-{args.dtype}"
    os.makedirs(work / Path(SEARAFT_PATH).parent, exist_ok=True)
    shutil.copy(args.exchange / "models" / "searaft.pth", work / SEARAFT_PATH)
    os.chdir(work)
    install(args.checkout, args.exchange, torch.float32 if args.dtype == "fp32" else torch.bfloat16)
    install_recorders()
    sys.argv = [str(args.checkout / "examples/wanvideo/model_training/train.py"), *argv]
    runpy.run_path(sys.argv[0], run_name="__main__")
    save_records(work)


def run_sample(args) -> None:
    plan = json.loads((args.exchange / "plan.json").read_text())["sample"]
    script = args.checkout / "combine_inference.py"
    paths = script_assignments(script)
    work = args.exchange / "theirs" / "sample"
    work.mkdir(parents=True, exist_ok=True)
    for kind, name in (("subject", "lora_spatial_path"), ("motion", "lora_temporal_path")):
        target = work / paths[name]
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(args.exchange / "loras" / f"{kind}.safetensors", target)
    os.chdir(work)
    install(args.checkout, args.exchange, torch.float32)
    from diffsynth.lora import GeneralLoRALoader
    from diffsynth.pipelines.wan_video_new import WanVideoPipeline

    calls = {"model": 0}
    real_call = WanVideoPipeline.__call__

    def call(self, **kwargs):
        REC["call"] = {k: v for k, v in kwargs.items() if isinstance(v, (int, float, str, bool))}
        kwargs.update(plan["sizes"])  # the tiny size; every other argument is their script's
        real_model_fn, real_decode = self.model_fn, self.vae.decode

        def model_fn(*a, **k):
            calls["model"] += 1
            return real_model_fn(*a, **k)

        def decode(hidden_states, *a, **k):
            REC["latents"] = f32(hidden_states)
            video = real_decode(hidden_states, *a, **k)
            REC["video"] = f32(video)
            return video

        self.model_fn, self.vae.decode = model_fn, decode
        return real_call(self, **kwargs)

    WanVideoPipeline.__call__ = call
    real_noise = WanVideoPipeline.generate_noise

    def generate_noise(self, shape, seed=None, **kw):
        noise = real_noise(self, shape, seed=seed, **kw)
        REC["noise"] = f32(noise)
        return noise

    WanVideoPipeline.generate_noise = generate_noise
    real_load = GeneralLoRALoader.load

    def load(self, model, state_dict_lora, alpha=1.0):
        REC["events"].append({"lora_alpha": alpha, "tensors": len(state_dict_lora),
                              "forward_passes_before": calls["model"]})
        return real_load(self, model, state_dict_lora, alpha=alpha)

    GeneralLoRALoader.load = load
    runpy.run_path(str(script), run_name="__main__")
    C.save(work / "sample.safetensors", {k: REC[k] for k in ("latents", "video", "noise")},
           {"call": REC["call"], "events": REC["events"], "negative_prompt": REC["call"].get("negative_prompt")})


def run_info(args) -> None:
    """What their files say: the training flags (parsed by their own parser), the launch's process count, their
    SEA-RAFT settings and the inference script's arguments."""
    sys.path.insert(0, str(args.checkout))
    from diffsynth.trainers.utils import wan_parser
    from diffsynth.utils.utils_encoder import SEARAFT_FlowProcessor

    info = {}
    for stage, sh in (("subject", "Wan2.1-T2V-1.3B-Subject.sh"), ("motion", "Wan2.1-T2V-1.3B-Motion.sh")):
        processes, argv = read_launch(args.checkout / sh)
        info[stage] = {"script": sh, "num_processes": processes, "args": vars(wan_parser().parse_args(argv))}
    processor = object.__new__(SEARAFT_FlowProcessor)
    processor._init_config()
    info["searaft"] = {k: v for k, v in vars(processor).items() if isinstance(v, (int, float, str, list, bool))}
    info["combine_inference"] = script_assignments(args.checkout / "combine_inference.py")
    (args.exchange / "info.json").write_text(json.dumps(info, indent=1, default=str))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=("train", "sample", "info"))
    ap.add_argument("--checkout", type=Path, required=True)
    ap.add_argument("--exchange", type=Path, required=True)
    ap.add_argument("--stage", choices=("subject", "motion"))
    ap.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32")
    args = ap.parse_args()
    args.checkout, args.exchange = args.checkout.resolve(), args.exchange.resolve()
    {"train": run_train, "sample": run_sample, "info": run_info}[args.mode](args)


if __name__ == "__main__":
    main()
