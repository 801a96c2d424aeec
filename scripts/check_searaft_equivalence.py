"""Check smrabooth's SEA-RAFT against the official implementation, with the same random weights.

Usage (in an environment with torch, torchvision, numpy, scipy, huggingface_hub and smrabooth installed):

    python scripts/check_searaft_equivalence.py /path/to/SEA-RAFT-checkout [--size 540 960 --size 372 518]

The official code is imported from the checkout given on the command line (never copied here). Its model is
built with the official config `config/eval/spring-M.json` (the Tartan-C-T-TSKH-spring540x960-M
architecture), its weights and BatchNorm statistics are randomised, and it is saved with its own
`save_pretrained` (PyTorchModelHubMixin, the hub's format) and as a `.pth`. smrabooth loads both files
with `load_searaft` (strict) and both models run on the same random images; the script prints the max
abs error of every iteration's flow and uncertainty, of `compute_flow`, and of the gradient w.r.t. the
first image.

Only one shim: the official encoder constructor initialises from torchvision's ImageNet ResNet weights,
a download that fails offline. `torchvision.models.resnet18/34` are replaced by versions that ignore
`weights=` (random init); every weight is overwritten with random values afterwards anyway.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch


def import_official(checkout: Path):
    import torchvision.models as tvm

    for name in ("resnet18", "resnet34"):  # shim: no ImageNet download; the weights are overwritten below
        original = getattr(tvm, name)
        setattr(tvm, name, lambda weights=None, _f=original, **kw: _f(weights=None, **kw))
    sys.path[:0] = [str(checkout / "core"), str(checkout)]
    from raft import RAFT

    return RAFT


def randomise(model: torch.nn.Module, seed: int):
    """Random weights of a sensible size, including the BatchNorm statistics and the ConvNeXt layer scale
    (official init leaves them at 1/0 and 1e-6, which would hide wiring mistakes)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict(keep_vars=True).items():
            if not t.is_floating_point():
                continue
            if (
                name.endswith(("running_var",))
                or (".bn" in name and name.endswith("weight"))
                or name.endswith("norm.weight")
            ):
                t.copy_(0.5 + torch.rand(t.shape, generator=g))
            elif name.endswith("gamma"):
                t.copy_(0.1 * (0.5 + torch.rand(t.shape, generator=g)))
            elif name.endswith(("bias", "running_mean")):
                t.copy_(0.1 * torch.randn(t.shape, generator=g))
            else:  # conv / linear weights: fan-in scaled normal
                fan_in = t[0].numel()
                t.copy_(torch.randn(t.shape, generator=g) * (1.0 / fan_in) ** 0.5)
        # Keep flows at a few pixels (not thousands), so the correlation lookups stay inside the image.
        model.flow_head[2].weight.mul_(0.01)
        model.flow_head[2].bias.mul_(0.01)


def official_calc_flow(model, image1, image2, iters, scale):
    """The official evaluate.py/custom.py `calc_flow` rule (resize by 2**scale, run, resize back)."""
    import torch.nn.functional as F

    img1 = F.interpolate(image1, scale_factor=2**scale, mode="bilinear", align_corners=False)
    img2 = F.interpolate(image2, scale_factor=2**scale, mode="bilinear", align_corners=False)
    flow = model(img1, img2, iters=iters, test_mode=True)["flow"][-1]
    return F.interpolate(flow, scale_factor=0.5**scale, mode="bilinear", align_corners=False) * (0.5**scale)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("official", type=Path, help="path of a checkout of github.com/princeton-vl/SEA-RAFT")
    parser.add_argument(
        "--size", type=int, nargs=2, action="append", metavar=("H", "W"), help="image size (repeatable)"
    )
    parser.add_argument("--iters", type=int, nargs="+", default=[4, 8])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    sizes = args.size or [(540, 960), (372, 518)]

    from smrabooth.models.searaft import SEARAFTConfig, compute_flow, load_searaft

    RAFT = import_official(args.official)
    cfg_path = args.official / "config" / "eval" / "spring-M.json"
    official_args = argparse.Namespace(**json.loads(cfg_path.read_text()))
    torch.manual_seed(args.seed)
    official = RAFT(official_args)
    randomise(official, args.seed)
    official.eval()
    config = SEARAFTConfig.from_dict(json.loads(cfg_path.read_text()))
    print(f"official config {cfg_path}: {config.to_dict()}")

    with tempfile.TemporaryDirectory() as tmp:
        official.save_pretrained(tmp + "/hub")  # the hub's format (config.json + model.safetensors)
        torch.save(official.state_dict(), tmp + "/model.pth")
        from safetensors import safe_open

        with safe_open(tmp + "/hub/model.safetensors", "pt") as f:
            n_keys = len(list(f.keys()))
        print(
            "official save_pretrained wrote",
            sorted(p.name for p in Path(tmp, "hub").iterdir()),
            f"with {n_keys} of {len(official.state_dict())} state-dict keys (shared tensors stored once)",
        )
        ours = load_searaft(tmp + "/hub", config=config)
        ours_pth = load_searaft(tmp + "/model.pth", config=config)
    for (k, a), b in zip(ours.state_dict().items(), ours_pth.state_dict().values()):
        assert torch.equal(a, b), k
    for k, v in official.state_dict().items():
        assert torch.equal(v, ours.state_dict()[k]), k
    print(f"weights: {len(official.state_dict())} official tensors equal after load_searaft (folder and .pth)")

    worst = 0.0
    g = torch.Generator().manual_seed(args.seed + 1)
    for h, w in sizes:
        x1 = torch.rand(1, 3, h, w, generator=g)
        # a smooth shift of x1 plus noise, so the two frames are related
        x2 = (0.8 * torch.roll(x1, shifts=(3, -5), dims=(2, 3)) + 0.2 * torch.rand(1, 3, h, w, generator=g)).clamp(0, 1)
        for iters in args.iters:
            t0 = time.time()
            a1 = (255 * x1).requires_grad_(True)
            ref = official(a1, 255 * x2, iters=iters, test_mode=True)
            ref["final"].square().mean().backward()
            with torch.no_grad():
                ref_calc = official_calc_flow(official, 255 * x1, 255 * x2, iters, official_args.scale)
            t1 = time.time()
            b1 = x1.clone().requires_grad_(True)
            out = ours(255 * b1, 255 * x2, iters=iters, all_iterations=True)
            out["final"].square().mean().backward()
            with torch.no_grad():
                flow = compute_flow(ours, x1, x2, iters=iters)
            t2 = time.time()
            flow_err = max((a - b).abs().max().item() for a, b in zip(ref["flow"], out["flow"]))
            info_err = max((a - b).abs().max().item() for a, b in zip(ref["info"], out["info"]))
            final_err = (ref_calc - flow).abs().max().item()
            scale = max(a.abs().max().item() for a in ref["flow"])
            # d/dx1 of ours vs d/d(255 x1) of official: the chain rule factor is 255
            grad_ref = 255 * a1.grad
            grad_err = (grad_ref - b1.grad).abs().max().item() / grad_ref.abs().max().item()
            assert len(ref["flow"]) == len(out["flow"]) == iters + 1
            worst = max(worst, flow_err, final_err)
            print(
                f"size {h}x{w} iters {iters}: max|flow| {scale:.3f} px; max abs error over all {iters + 1} "
                f"predictions: flow {flow_err:.3e} px (relative {flow_err / scale:.2e}), info {info_err:.3e}; "
                f"compute_flow (scale {config.scale}) vs official calc_flow {final_err:.3e} px; "
                f"input gradient relative error {grad_err:.2e} "
                f"(official {t1 - t0:.1f}s, ours {t2 - t1:.1f}s)"
            )
    print(f"worst max abs flow error: {worst:.3e} px")


if __name__ == "__main__":
    main()
