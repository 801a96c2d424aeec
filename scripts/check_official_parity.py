"""Parity of the `official` recipe with the authors' released code, function by function.

    python scripts/check_official_parity.py PATH_TO_THEIR_CHECKOUT

PATH is a checkout of the authors' SMRABooth repository (DiffSynth-Studio based; the one this was run on is
recorded in benchmarks/README.md). Nothing of theirs is kept in this repository: their functions are loaded
from PATH at run time, each file on its own (their package's __init__ imports every model they ship), and
compared with ours on the same random tensors. Printed: the max absolute difference of each comparison
(0, float rounding, or a documented difference).

Their files need torch, numpy and einops. `torchvision` is imported by their loss file for a function it does
not use here; when it is not installed an empty stand-in module takes its place (never install the CUDA
torchvision wheels next to a CPU torch).
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import sys
import types
from pathlib import Path

import torch

from smrabooth.align.mora import flow_l1, window_source_frames, window_starts
from smrabooth.align.sura import build_projector, sura_loss
from smrabooth.data.subject import mask_to_latent_grid
from smrabooth.recipes import OFFICIAL
from smrabooth.schedules import InjectionSchedule, shifted_linear_sigmas, timestep_weights, training_sigmas
from smrabooth.train.motion import debiased_loss
from smrabooth.train.subject import masked_flow_loss

FILES = {"scheduler": "diffsynth/schedulers/flow_match.py", "losses": "diffsynth/utils/utils_loss.py",
         "pipeline": "diffsynth/pipelines/wan_video_new.py", "inference": "combine_inference.py"}


# ---------------------------------------------------------------- loading their code from the checkout
def _package(name: str) -> types.ModuleType:
    """An empty package in sys.modules (their modules import each other by these names)."""
    module = sys.modules.get(name) or types.ModuleType(name)
    module.__path__ = []
    sys.modules[name] = module
    return module


def load_file(root: Path, rel: str, name: str) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, root / rel)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def load_functions(root: Path, rel: str, names: dict[str, str | None], env: dict) -> dict:
    """Functions from a file whose module cannot be imported alone: each definition (`names`: function ->
    its class, or None at module level) is compiled on its own with the globals `env`."""
    tree = ast.parse((root / rel).read_text(), filename=str(root / rel))
    found = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            bodies = [(None, node)]
        elif isinstance(node, ast.ClassDef):
            bodies = [(node.name, n) for n in node.body if isinstance(n, ast.FunctionDef)]
        else:
            bodies = []
        for owner, fn in bodies:
            if fn.name in names and names[fn.name] == owner:
                namespace = dict(env)
                code = compile(ast.Module(body=[fn], type_ignores=[]), str(root / rel), "exec")
                exec(code, namespace)  # noqa: S102 (their code, from the checkout the user names)
                found[fn.name] = namespace[fn.name]
    missing = set(names) - set(found)
    if missing:
        sys.exit(f"{root / rel}: no {', '.join(sorted(missing))} found: is this the authors' checkout?")
    return found


def load_theirs(root: Path) -> dict:
    for rel in FILES.values():
        if not (root / rel).is_file():
            sys.exit(f"{root} has no {rel}: pass a checkout of the authors' repository")
    try:
        import einops  # noqa: F401
    except ImportError:
        sys.exit("their code needs einops: pip install einops")
    try:
        import torchvision.transforms.functional as tf
    except Exception:  # noqa: BLE001 (not installed, or a CUDA build that fails to load): an empty stand-in
        for name in ("torchvision", "torchvision.transforms", "torchvision.transforms.functional"):
            sys.modules[name] = types.ModuleType(name)
        sys.modules["torchvision"].transforms = sys.modules["torchvision.transforms"]
        sys.modules["torchvision.transforms"].functional = tf = sys.modules["torchvision.transforms.functional"]
    for name in ("diffsynth", "diffsynth.schedulers", "diffsynth.utils", "diffsynth.pipelines"):
        _package(name)
    scheduler = load_file(root, FILES["scheduler"], "diffsynth.schedulers.flow_match")
    losses = load_file(root, FILES["losses"], "diffsynth.utils.utils_loss")
    # their training loss keeps the MoRA window position as attributes of this module
    state = sys.modules["diffsynth.pipelines.wan_video_new"] = types.ModuleType("diffsynth.pipelines.wan_video_new")
    sys.modules["diffsynth.pipelines"].wan_video_new = state
    from einops import rearrange

    env = {"torch": torch, "nn": torch.nn, "rearrange": rearrange, "F": tf}
    functions = load_functions(root, FILES["pipeline"], {"build_mlp": None, "training_loss": "WanVideoPipeline"}, env)
    return {"scheduler": scheduler, "losses": losses, "window_state": state, **functions}


# ---------------------------------------------------------------- a stand-in for their pipeline object
class FakePipeline:
    """What their `training_loss` reads from `self`: the training scheduler, a model that returns a given
    prediction, a VAE whose decode is a fixed differentiable map, and device/dtype."""

    def __init__(self, theirs, prediction: torch.Tensor, decoded: list):
        self.scheduler = theirs["scheduler"].FlowMatchScheduler(shift=1.0, sigma_min=0.0, extra_one_step=True)
        self.scheduler.set_timesteps(1000, training=True)
        self.torch_dtype, self.device = torch.float32, "cpu"
        self.prediction, self.decoded = prediction, decoded
        self.vae = types.SimpleNamespace(decode=self._decode)

    def model_fn(self, **kwargs):
        return self.prediction

    def load_models_to_device(self, names):
        pass

    def _decode(self, latents, **kwargs):
        """(1, C, W, h, w) -> (1, 3, 1 + 4 (W - 1), h, w): latent 0 once, each later latent 4 times (Wan's counts)."""
        self.decoded.append(latents.detach().clone())
        x = latents[:, :3]
        return torch.cat([x[:, :, :1], x[:, :, 1:].repeat_interleave(4, dim=2)], dim=2)


def fake_flow_processor():
    """Adjacent-frame differences of the first two channels stand in for SEA-RAFT."""
    def tensor_flow(video):  # (F, 3, H, W)
        return list(video[1:, :2] - video[:-1, :2]), None

    return types.SimpleNamespace(tensor_flow=tensor_flow)


# ---------------------------------------------------------------- the comparisons
def compare_all(theirs: dict, seed: int = 0) -> list[tuple[str, float, str]]:
    g = torch.Generator().manual_seed(seed)
    rows = []

    # 1. the training sigma table and the bell weights
    sched = theirs["scheduler"].FlowMatchScheduler(shift=1.0, sigma_min=0.0, extra_one_step=True)
    sched.set_timesteps(1000, training=True)
    ours_sigmas = training_sigmas(OFFICIAL.subject.shift)
    ours_w = timestep_weights(ours_sigmas, OFFICIAL.subject.timestep_weight)
    rows.append(("training sigma table (1000)", float((sched.sigmas.double() - ours_sigmas.double()).abs().max()), ""))
    rows.append(("bell timestep weights (1000)", float((sched.linear_timesteps_weights.double() - ours_w.double())
                                                        .abs().max()), ""))
    ids = torch.randint(1000, (64,), generator=g)
    their_w = torch.stack([sched.training_weight(sched.timesteps[i]) for i in ids])
    rows.append(("training_weight at 64 drawn timesteps", float((their_w.double() - ours_w[ids].double()).abs().max()),
                 ""))

    # 2. the masked MSE (their mask: the image at full size, 3 channels in [0, 1])
    pred, target = torch.randn(1, 16, 1, 64, 64, generator=g), torch.randn(1, 16, 1, 64, 64, generator=g)
    mask = (torch.rand(1, 1, 512, 512, generator=g) > 0.7).float()
    mask[..., :100, :] = 0  # an empty band, so whole cells drop out
    theirs_mse = theirs["losses"].masked_mse_loss(pred, target, mask.expand(1, 3, 512, 512))
    grid = mask_to_latent_grid(mask[0], (64, 64), OFFICIAL.subject.mask_rule)
    ours_mse = masked_flow_loss(pred, target, grid[None])
    rows.append(("masked MSE (bilinear mask > 0)", abs(float(theirs_mse) - float(ours_mse)), ""))

    # 3. SuRA: the projector's shape, and the loss with the same projector weights
    their_proj = theirs["build_mlp"](1536, 2048, 1536)
    ours_proj = build_projector(1536, 1536, OFFICIAL.subject.projector_width)
    shapes = [[p.shape for p in m.state_dict().values()] for m in (their_proj, ours_proj)]
    shapes_equal = shapes[0] == shapes[1]
    ours_proj.load_state_dict(their_proj.state_dict())
    hidden, target_tokens = torch.randn(1, 1024, 1536, generator=g), torch.randn(1, 1024, 1536, generator=g)
    with torch.no_grad():
        their_sura = theirs["losses"].SILoss()(zs_tilde=[their_proj(hidden)], zs=[target_tokens])
        ours_sura = sura_loss(target_tokens, hidden, ours_proj)
    rows.append(("SuRA projector 1536-2048-2048-1536 shapes", 0.0 if shapes_equal else float("inf"), ""))
    rows.append(("SuRA loss (-mean cosine, 1024 tokens)", abs(float(their_sura) - float(ours_sura)),
                 "theirs adds 1e-8 to every feature before normalising"))

    # 4. the flow loss normalisation
    pred_flow, ref_flow = torch.randn(15, 2, 40, 72, generator=g) * 5, torch.randn(15, 2, 40, 72, generator=g) * 5
    rows.append(("MoRA flow L1, x / width + y / height", abs(float(theirs["losses"].flow_loss(pred_flow, ref_flow))
                                                            - float(flow_l1(pred_flow, ref_flow, "size"))), ""))

    # 5. the phase-2 loss: w(t) * (MSE + debiased MSE), through their training_loss with the same draws
    latents = torch.randn(1, 16, 13, 8, 8, generator=g)
    noise, u = torch.randn(latents.shape, generator=g), torch.randn(latents.shape, generator=g)
    flows = torch.randn(48, 2, 8, 8, generator=g)
    worst = 0.0
    for s in range(5):
        theirs["window_state"].__dict__.pop("global_window_start", None)
        pipe = FakePipeline(theirs, u, [])
        torch.manual_seed(s)
        temporal, _ = theirs["training_loss"](pipe, input_latents=latents, noise=noise, train_type="Motion_1",
                                              flow_list=flows, flow_processor=fake_flow_processor())
        torch.manual_seed(s)  # their draws, in their order: the timestep index, then f*
        tid, frame = int(torch.randint(0, 1000, (1,))), int(torch.randint(0, 13, (1,)))
        target = noise - latents
        ours = ours_w[tid] * (((u - target) ** 2).mean() + debiased_loss(u[0], target[0], frame,
                                                                         OFFICIAL.motion.debias_beta))
        worst = max(worst, abs(float(temporal) - float(ours)))
    rows.append(("phase-2 loss w(t) (MSE + debiased), 5 draws", worst, ""))

    # 6. the MoRA window over 20 steps of their training loss, and the reference frames it reads
    index = torch.arange(13.0).view(1, 1, 13, 1, 1).expand(1, 16, 13, 8, 8).clone()  # latent t holds t
    reference = torch.arange(48.0).view(48, 1, 1, 1).expand(48, 2, 8, 8).clone() * 8  # pair k holds 8k (x / 8 = k)
    theirs["window_state"].__dict__.pop("global_window_start", None)
    decoded, read = [], []
    real_flow_loss = theirs["losses"].flow_loss
    theirs["losses"].flow_loss = lambda pred, ref: (read.append(ref[:, 0, 0, 0] / 8), real_flow_loss(pred, ref))[1]
    try:
        pipe = FakePipeline(theirs, torch.zeros_like(index), decoded)
        for _ in range(20):  # noise = the latents and u = 0: z0_hat = the latents at any sigma
            theirs["training_loss"](pipe, input_latents=index, noise=index, train_type="Motion_1",
                                    flow_list=reference, flow_processor=fake_flow_processor())
    finally:
        theirs["losses"].flow_loss = real_flow_loss
    their_starts = [int(d[0, 0, 0, 0, 0]) for d in decoded]
    starts = window_starts(13, OFFICIAL.motion.window, OFFICIAL.motion.window_stride, OFFICIAL.motion.window_wrap)
    ours_starts = [starts[k % len(starts)] for k in range(20)]
    rows.append(("MoRA window starts, 20 steps (13 latents)",
                 float(max(abs(a - b) for a, b in zip(their_starts, ours_starts))),
                 f"theirs {their_starts[:6]}..., ours {ours_starts[:6]}..."))
    offsets = []
    for s, pairs in zip(their_starts, read):
        ours_first = window_source_frames(s, OFFICIAL.motion.window, OFFICIAL.motion.drop_frames).start
        offsets.append(abs(int(pairs[0]) - ours_first))
    rows.append(("MoRA reference flow index (first pair)", float(max(offsets)),
                 "documented: theirs 0 or 1 + 4(s - 1), ours 4s + 5 (the frame each decoded frame came from)"))

    # 7. the inference scale schedule and sampler sigmas (their __call__ and combine_inference.py)
    rows.append(inference_schedule_row(theirs))
    sched_inf = theirs["scheduler"].FlowMatchScheduler(shift=5.0, sigma_min=0.0, extra_one_step=True)
    sched_inf.set_timesteps(50, shift=OFFICIAL.sampler.shift)
    rows.append(("sampler sigmas, 50 steps, shift 1", float((sched_inf.sigmas.double() - torch.from_numpy(
        shifted_linear_sigmas(50, OFFICIAL.sampler.shift))).abs().max()), ""))
    return rows


def inference_schedule_row(theirs) -> tuple[str, float, str]:
    """Their per-step LoRA scales: the alphas combine_inference.py merges with before sampling, and the ones
    their pipeline re-merges at `sparse_timestep` (defaults of their __call__)."""
    root = Path(sys.modules["diffsynth.schedulers.flow_match"].__file__).parents[2]
    pipeline = ast.parse((root / FILES["pipeline"]).read_text())
    call = next(n for n in ast.walk(pipeline) if isinstance(n, ast.FunctionDef) and n.name == "__call__")
    args = call.args.args[len(call.args.args) - len(call.args.defaults):]
    defaults = {a.arg: d.value for a, d in zip(args, call.args.defaults) if isinstance(d, ast.Constant)}
    before = _load_lora_alphas(ast.parse((root / FILES["inference"]).read_text()))
    after = _load_lora_alphas(pipeline, inside="STAIS")
    steps, switch = defaults["num_inference_steps"], defaults["sparse_timestep"]
    theirs_scales = [before if k < switch else after for k in range(steps)]
    ours = InjectionSchedule(OFFICIAL.sampler.t_point, OFFICIAL.sampler.subject_scale_early,
                             OFFICIAL.sampler.subject_scale, OFFICIAL.sampler.motion_scale)
    ours_scales = [(ours.scales_at(k)["subject"], ours.scales_at(k)["motion"]) for k in range(steps)]
    diff = max(abs(a - b) for t, o in zip(theirs_scales, ours_scales) for a, b in zip(t, o))
    return (f"inference scales, {steps} steps (subject, motion)", diff,
            f"theirs {before} then {after} from step {switch}")


def _load_lora_alphas(tree: ast.AST, inside: str | None = None) -> tuple[float, float]:
    """The alpha= of the first two load_lora calls (subject, motion), optionally inside `if ... == "STAIS"`."""
    nodes = [tree]
    if inside:
        nodes = [n for n in ast.walk(tree) if isinstance(n, ast.If) and inside in ast.unparse(n.test)]
    alphas = []
    for root in nodes:
        for n in ast.walk(root):
            if isinstance(n, ast.Call) and getattr(n.func, "attr", None) == "load_lora":
                alphas += [kw.value.value for kw in n.keywords if kw.arg == "alpha"]
    return tuple(alphas[:2])


def main():
    ap = argparse.ArgumentParser(description="Compare the official recipe with the authors' code.")
    ap.add_argument("checkout", type=Path, help="a checkout of the authors' repository")
    args = ap.parse_args()
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):  # their functions print as they go
        rows = compare_all(load_theirs(args.checkout.resolve()))
    width = max(len(r[0]) for r in rows)
    print(f"{'comparison':{width}s}  max abs diff  note")
    for name, diff, note in rows:
        print(f"{name:{width}s}  {diff:12.3g}  {note}")


if __name__ == "__main__":
    main()
