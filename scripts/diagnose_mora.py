#!/usr/bin/env python
"""MoRA on SMRA-Sprites, one link at a time (docs/bench-sprites.md, "Diagnosis").

    python scripts/diagnose_mora.py links --out DIR [--model BUNDLE] [--family spiral] [--clips 2] [--draws 3]
    python scripts/diagnose_mora.py alone --out DIR [--steps 60] [--max-sigma 1.0] [--flow-weight 0] [--seeds 0,1]

`links` measures, without training, on the bench's motion clips of --family (`sample_family_clips(family,
clips, seed=101)`, read back from their mp4 exactly as the motion trainer reads them):

  1. flow model   the bundle's SEA-RAFT against the world's exact flow: end-point error (EPE, pixels) on the
                  sprite's pixels and on the background, for the rendered frames, the mp4 frames, the clip's
                  VAE round trip (whole clip) and MoRA's windowed decode of the clean latent (the best any
                  one-step estimate can do). |gt| is the mean true flow on the sprite (per frame pair in the
                  json). DIR/vae_roundtrip.png: per clip, the truth and its VAE round trip, every 2nd frame.
  2. mapping      MoRA's L1 (pixels) between the windowed decode of the CLEAN latent and the reference flows
                  shifted by -4..+4 frames from `window_source_frames`: the minimum must sit at 0.
  3. trivial      the L1 (pixels) that a prediction with no motion at all scores (zero flow), against the true
                  flow moved by d pixels (a sprite doing the right motion d pixels away): where a moving sprite
                  in the wrong place costs more than no sprite.
  4. one-step     per sigma, z0_hat = z_t - sigma u of the bundle's DiT (no LoRA, the clip's own training
                  caption) against the clean latent: latent error (relative), the decoded window's sprite
                  flow magnitude against the truth (1 = as sharp as the clean decode; ~0 = a blur that does not
                  move), flow EPE on the sprite, and MoRA's L1; and the fraction of training draws at that
                  sigma or above under shift 5 (`paper`) and shift 1 (`official`).
  5. gradients    per sigma, the norm of the gradient on a fresh LoRA (the bench's: rank 16, all six layer
                  types; B is 0 at init, so the gradient is on B) of the flow-matching loss, of MoRA in pixels
                  and of MoRA in `size` units, and the cosine between the flow-matching and MoRA gradients.

`alone` trains a motion LoRA (the bench's settings) on ONE clip with a loss of your choice --flow-weight x
flow matching + --mora-weight x MoRA, MoRA only at draws with sigma <= --max-sigma (its target the clip's flows,
or with --reference decoded the flows of the clip's clean latent decoded window by window), then generates the clip's
own caption with the LoRA (all layers, scale 1) and without, and scores the path against the clip's truth as
scripts/check_motion_self_reproduction.py does (err in image widths, traj, travel, size, family).

Writes DIR/<command>.json and prints Markdown tables.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

SIGMAS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.7, 0.9, 1.0)


def setup(args):
    from smrabooth.data.motion import encode_video_latent, load_motion_frames
    from smrabooth_sprites.bundle import load_bundle
    from smrabooth_sprites.experiment import ExperimentSettings, mora_window, resolve_bundle, settings_for_bundle
    from smrabooth_sprites.folders import load_ground_truth, write_motion_folder
    from smrabooth_sprites.world import sample_family_clips

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    settings = settings_for_bundle(ExperimentSettings(model=str(resolve_bundle(args.model)), out=str(out)))
    models = load_bundle(settings.model)
    folder = out / f"clips-{args.family}"
    if not (folder / "metadata.csv").is_file():
        write_motion_folder(folder, sample_family_clips(args.family, args.clips, seed=settings.data_seed + 101,
                                                        frames=settings.frames, size=settings.size),
                            fps=settings.fps, frames=settings.frames, size=settings.size)
    clips = []
    for i in range(args.clips):
        truth = load_ground_truth(folder / f"clip_{i:03d}.npz")
        info = json.loads((folder / f"clip_{i:03d}.json").read_text())
        frames = load_motion_frames(folder / f"clip_{i:03d}.mp4", settings.frames, settings.fps, settings.size,
                                    settings.size)
        clips.append({"truth": truth, "text": info["text"], "frames": frames,
                      "latent": encode_video_latent(models.pipe.vae, frames), "path": folder / f"clip_{i:03d}.mp4"})
    return settings, models, clips, mora_window(settings.frames), out


def flow_fn_of(models):
    from smrabooth.models.searaft import compute_flow

    return lambda a, b: compute_flow(models.searaft, a, b)


def epe(flow: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor) -> tuple[float, float]:
    """Mean end-point error on the mask and off it. flow, gt (N, 2, H, W); mask (N, H, W) bool."""
    e = (flow - gt).norm(dim=1)
    return float(e[mask].mean()), float(e[~mask].mean())


def pair_flows(frames: torch.Tensor, flow_fn) -> torch.Tensor:
    from smrabooth.align.mora import reference_flows

    return reference_flows(frames, flow_fn)


def window_frames(vae, latent: torch.Tensor, start: int, window: int, drop: int) -> torch.Tensor:
    from smrabooth.align.mora import decode_window

    return decode_window(vae, latent[None], start, window, drop, checkpoint=False)[0]


def caption_embeds(settings, pipe, texts):
    from smrabooth.backbones import backbone_of
    from smrabooth.data.cache import default_cache_dir

    return backbone_of(pipe).encode_captions(pipe, list(dict.fromkeys(texts)), settings.model, default_cache_dir())


# ------------------------------------------------------------------------------------------------- links
@torch.no_grad()
def link_flow_model(models, clips, win) -> list[dict]:
    from smrabooth.align.mora import window_source_frames, window_starts
    from smrabooth.models.vae_decode import decode_latents_differentiable, to_unit_frames

    flow_fn = flow_fn_of(models)
    vae = models.pipe.vae
    window, drop, stride = win
    rows = []
    for i, c in enumerate(clips):
        gt = torch.from_numpy(c["truth"]["flow"]).float()  # (F-1, 2, H, W)
        mask = torch.from_numpy(c["truth"]["masks"][:-1])
        rendered = torch.from_numpy(c["truth"]["frames"]).permute(0, 3, 1, 2).float() / 255
        roundtrip = to_unit_frames(decode_latents_differentiable(vae, c["latent"][None], checkpoint=False))[0]
        sources = {"rendered frames": rendered, "mp4 frames": c["frames"], "VAE round trip (whole clip)": roundtrip}
        c["roundtrip"] = roundtrip
        for name, frames in sources.items():
            f = pair_flows(frames, flow_fn)
            rows.append({"clip": i, "source": name, "epe_sprite": epe(f, gt, mask)[0], "epe_bg": epe(f, gt, mask)[1],
                         "gt_sprite": float(gt.norm(dim=1)[mask].mean()),
                         "flow_sprite": float(f.norm(dim=1)[mask].mean()),
                         "l1_px": float((f - gt).abs().mean()),
                         "per_pair": [round(float(f[k].norm(dim=0)[mask[k]].mean()), 1) for k in range(len(f))]})
        for s in window_starts(c["latent"].shape[1], window, stride):
            src = window_source_frames(s, window, drop)
            f = pair_flows(window_frames(vae, c["latent"], s, window, drop), flow_fn)
            g, m = gt[src.start:src.stop - 1], mask[src.start:src.stop - 1]
            rows.append({"clip": i, "source": f"windowed decode, start {s} (frames {src.start}-{src.stop - 1})",
                         "epe_sprite": epe(f, g, m)[0], "epe_bg": epe(f, g, m)[1],
                         "gt_sprite": float(g.norm(dim=1)[m].mean()), "flow_sprite": float(f.norm(dim=1)[m].mean()),
                         "l1_px": float((f - g).abs().mean())})
    return rows


@torch.no_grad()
def link_mapping(models, clips, win, offsets=range(-4, 5)) -> list[dict]:
    from smrabooth.align.mora import window_source_frames, window_starts

    flow_fn = flow_fn_of(models)
    window, drop, stride = win
    rows = []
    for i, c in enumerate(clips):
        gt = torch.from_numpy(c["truth"]["flow"]).float()
        for s in window_starts(c["latent"].shape[1], window, stride):
            src = window_source_frames(s, window, drop)
            f = pair_flows(window_frames(models.pipe.vae, c["latent"], s, window, drop), flow_fn)
            for d in offsets:
                a, b = src.start + d, src.stop - 1 + d
                if a < 0 or b > gt.shape[0]:
                    continue
                rows.append({"clip": i, "start": s, "offset": d, "l1_px": float((f - gt[a:b]).abs().mean())})
    return rows


def shift_flow(flow: torch.Tensor, dx: int) -> torch.Tensor:
    """The flow field moved dx pixels to the right (zeros come in): the same motion, dx pixels away."""
    out = torch.zeros_like(flow)
    if dx == 0:
        return flow.clone()
    out[..., dx:] = flow[..., :-dx]
    return out


def link_trivial(clips, shifts=(0, 2, 4, 8, 16, 32)) -> list[dict]:
    rows = []
    for i, c in enumerate(clips):
        gt = torch.from_numpy(c["truth"]["flow"]).float()
        radius = float(c["truth"]["scales"].mean())
        rows.append({"clip": i, "prediction": "no motion (zero flow)", "l1_px": float(gt.abs().mean()),
                     "radius_px": radius})
        for d in shifts:
            rows.append({"clip": i, "prediction": f"true motion {d} px away", "l1_px":
                         float((shift_flow(gt, d) - gt).abs().mean()), "radius_px": radius})
    return rows


def noised_prediction(transformer, z0: torch.Tensor, sigma: float, text: torch.Tensor, seed: int):
    """The draw both links make: noise from `seed`, z_t = (1 - sigma) z0 + sigma noise, and the model's velocity
    u at sigma. Returns (noise, z_t, sigma as a (1,) tensor, u)."""
    noise = torch.randn(z0.shape, generator=torch.Generator().manual_seed(seed))
    s = torch.tensor([sigma])
    z_t = (1 - sigma) * z0 + sigma * noise
    u = transformer(z_t, s * 1000, text, return_dict=False)[0].float()
    return noise, z_t, s, u


def training_share(sigma: float, shift: float) -> float:
    """Share of training draws (index uniform over the shifted table) with a noise level >= sigma."""
    from smrabooth.schedules import training_sigmas

    return float((training_sigmas(shift) >= sigma - 1e-9).float().mean())


def link_one_step(settings, models, clips, win, draws: int, sigmas=SIGMAS) -> list[dict]:
    from smrabooth.align.mora import one_step_z0, window_source_frames

    flow_fn = flow_fn_of(models)
    window, drop, _ = win
    pipe, vae = models.pipe, models.pipe.vae
    embeds = caption_embeds(settings, pipe, [c["text"] for c in clips])
    rows = []
    for i, c in enumerate(clips):
        gt = torch.from_numpy(c["truth"]["flow"]).float()
        mask = torch.from_numpy(c["truth"]["masks"][:-1])
        src = window_source_frames(0, window, drop)
        g, m = gt[src.start:src.stop - 1], mask[src.start:src.stop - 1]
        with torch.no_grad():
            clean = pair_flows(window_frames(vae, c["latent"], 0, window, drop), flow_fn)
        clean_mag = float(clean.norm(dim=1)[m].mean())
        z0 = c["latent"][None]
        for sigma in sigmas:
            acc = []
            for k in range(draws):
                with torch.no_grad():
                    _, z_t, s, u = noised_prediction(pipe.transformer, z0, sigma, embeds[c["text"]], 1000 * i + k)
                    z0_hat = one_step_z0(z_t, u, s)
                    f = pair_flows(window_frames(vae, z0_hat[0], 0, window, drop), flow_fn)
                acc.append({"latent_err": float((z0_hat - z0).norm() / z0.norm()),
                            "sharp": float(f.norm(dim=1)[m].mean()) / clean_mag,
                            "epe_sprite": epe(f, g, m)[0], "l1_px": float((f - g).abs().mean())})
            row = {"clip": i, "sigma": sigma, **{k: float(np.mean([a[k] for a in acc])) for k in acc[0]},
                   "share_shift5": training_share(sigma, 5.0), "share_shift1": training_share(sigma, 1.0)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def link_gradients(settings, models, clips, win, draws: int, sigmas=SIGMAS) -> list[dict]:
    from smrabooth.align.mora import decode_window, flow_l1, one_step_z0, window_ref_flows
    from smrabooth.align.mora import mora_loss as mora
    from smrabooth.train.common import add_lora_adapter

    window, drop, _ = win
    pipe, vae = models.pipe, models.pipe.vae
    flow_fn = flow_fn_of(models)
    embeds = caption_embeds(settings, pipe, [c["text"] for c in clips])
    transformer = pipe.transformer
    vae.requires_grad_(False)
    models.searaft.requires_grad_(False)
    params = add_lora_adapter(transformer, "probe", settings.motion_rank, float(settings.motion_rank),
                              ("q", "k", "v", "o", "ffn.0", "ffn.2"), seed=0)
    # B is zero at init, so only B gets a gradient; give B a small random value so both factors do, as
    # after a few steps of training
    with torch.no_grad():
        g = torch.Generator().manual_seed(7)
        for n, p in transformer.named_parameters():
            if "lora_B" in n and p.requires_grad:
                p.copy_(torch.randn(p.shape, generator=g) * 1e-3)

    def grad_of(loss) -> torch.Tensor:
        grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
        return torch.cat([(x if x is not None else torch.zeros_like(p)).flatten() for x, p in zip(grads, params)])

    rows = []
    try:
        for i, c in enumerate(clips):
            flows = pair_flows(c["frames"], flow_fn)
            ref = window_ref_flows(flows, 0, window, drop)
            z0 = c["latent"][None]
            for sigma in sigmas:
                acc = []
                for k in range(draws):
                    noise, z_t, s, u = noised_prediction(transformer, z0, sigma, embeds[c["text"]], 1000 * i + k)
                    fm = ((u - (noise - z0)) ** 2).mean()
                    frames = decode_window(vae, one_step_z0(z_t, u, s), 0, window, drop, checkpoint=False)
                    pred = flow_fn(frames[0, :-1], frames[0, 1:])
                    l_px, l_size = flow_l1(pred[None], ref[None], "pixels"), flow_l1(pred[None], ref[None], "size")
                    g_fm, g_px, g_size = grad_of(fm), grad_of(l_px), grad_of(l_size)
                    with torch.no_grad():  # the loss the trainer computes is the one measured here
                        assert torch.allclose(mora(frames, ref, flow_fn), l_px)
                    acc.append({"flow_loss": float(fm), "mora_px": float(l_px), "mora_size": float(l_size),
                                "grad_flow": float(g_fm.norm()), "grad_mora_px": float(g_px.norm()),
                                "grad_mora_size": float(g_size.norm()),
                                "cos_flow_mora": float(torch.nn.functional.cosine_similarity(g_fm, g_px, dim=0))})
                row = {"clip": i, "sigma": sigma, **{k: float(np.mean([a[k] for a in acc])) for k in acc[0]}}
                rows.append(row)
                print(json.dumps(row), flush=True)
    finally:
        transformer.delete_adapters(["probe"])
    return rows


def table(rows: list[dict], cols: list[str], fmt: str = "{:.3f}") -> str:
    head = "| " + " | ".join(cols) + " |\n|" + "|".join("---" for _ in cols) + "|\n"
    body = "".join("| " + " | ".join(fmt.format(r[c]) if isinstance(r[c], float) else str(r[c]) for c in cols)
                   + " |\n" for r in rows)
    return head + body


def mean_over_clips(rows: list[dict], key: str) -> list[dict]:
    groups: dict = {}
    for r in rows:
        groups.setdefault(r[key], []).append(r)
    return [{key: k, **{c: float(np.mean([r[c] for r in g])) for c in g[0] if c not in (key, "clip") and
                        isinstance(g[0][c], float)}} for k, g in groups.items()]


def run_links(args) -> int:
    torch.set_grad_enabled(True)
    settings, models, clips, win, out = setup(args)
    t0 = time.time()
    res = {"window": win, "clips": [c["text"] for c in clips]}
    which = set(args.links.split(","))
    sigmas = [float(s) for s in args.sigmas.split(",")]
    if "flow" in which:
        from PIL import Image

        res["flow_model"] = link_flow_model(models, clips, win)
        # the truth and its VAE round trip, every second frame, one pair of rows per clip
        rows = [np.concatenate([np.asarray(f) for f in frames[::2]], 1) for c in clips
                for frames in (c["truth"]["frames"], (c["roundtrip"].permute(0, 2, 3, 1).numpy() * 255).round()
                               .clip(0, 255).astype(np.uint8))]
        Image.fromarray(np.concatenate(rows, 0)).save(out / "vae_roundtrip.png")
        print("## 1. flow model\n" + table(res["flow_model"], ["clip", "source", "epe_sprite", "epe_bg", "gt_sprite",
                                                               "flow_sprite", "l1_px"]), flush=True)
    if "mapping" in which:
        res["mapping"] = link_mapping(models, clips, win)
        print("## 2. mapping\n" + table(mean_over_clips(res["mapping"], "offset"), ["offset", "l1_px"], "{:.4f}"),
              flush=True)
    if "trivial" in which:
        res["trivial"] = link_trivial(clips)
        print("## 3. trivial\n" + table(res["trivial"], ["clip", "prediction", "l1_px", "radius_px"], "{:.4f}"),
              flush=True)
    if "one-step" in which:
        res["one_step"] = link_one_step(settings, models, clips, win, args.draws, sigmas)
        print("## 4. one-step\n" + table(mean_over_clips(res["one_step"], "sigma"),
                                         ["sigma", "latent_err", "sharp", "epe_sprite", "l1_px", "share_shift5",
                                          "share_shift1"]), flush=True)
    if "gradients" in which:
        res["gradients"] = link_gradients(settings, models, clips, win, args.draws, sigmas)
        print("## 5. gradients\n" + table(mean_over_clips(res["gradients"], "sigma"),
                                          ["sigma", "flow_loss", "mora_px", "mora_size", "grad_flow", "grad_mora_px",
                                           "grad_mora_size", "cos_flow_mora"], "{:.4g}"), flush=True)
    res["seconds"] = time.time() - t0
    name = "links-" + "-".join(sorted(which)) + ".json"
    (out / name).write_text(json.dumps(res, indent=1))
    print(f"{res['seconds']:.0f} s; wrote {out / name}")
    return 0


# ------------------------------------------------------------------------------------------------- alone
def run_alone(args) -> int:
    """A motion LoRA trained on one clip with the chosen mix of flow matching and MoRA."""
    from smrabooth.align.mora import decode_window, mora_loss, one_step_z0, window_ref_flows, window_starts
    from smrabooth.lora.files import load_lora
    from smrabooth.sampling import GenerateConfig, generate
    from smrabooth.schedules import training_sigmas
    from smrabooth.train.common import add_lora_adapter, export_lora

    sys_path_script = Path(__file__).resolve().parent
    import sys

    sys.path.insert(0, str(sys_path_script))
    from check_motion_self_reproduction import path_scores

    args.clips = max(args.clips, args.clip + 1)
    settings, models, clips, win, out = setup(args)
    window, drop, stride = win
    c = clips[args.clip]
    pipe, vae, transformer = models.pipe, models.pipe.vae, models.pipe.transformer
    flow_fn = flow_fn_of(models)
    embeds = caption_embeds(settings, pipe, [c["text"]])[c["text"]]
    flows = pair_flows(c["frames"], flow_fn)
    starts = window_starts(c["latent"].shape[1], window, stride)
    vae.requires_grad_(False)
    models.searaft.requires_grad_(False)
    if args.reference == "decoded":  # per window: the flows of the clean latent decoded as MoRA decodes z0_hat
        with torch.no_grad():
            decoded = {s: pair_flows(window_frames(vae, c["latent"], s, window, drop), flow_fn) for s in starts}
    name = (f"fw{args.flow_weight:g}-mw{args.mora_weight:g}-max{args.max_sigma:g}-{args.units}-{args.reference}"
            f"-shift{args.shift:g}-{args.steps}")
    lora_path = out / "alone" / name / "motion_lora.safetensors"
    log = []
    if not lora_path.is_file():
        params = add_lora_adapter(transformer, "motion", settings.motion_rank, float(settings.motion_rank),
                                  ("q", "k", "v", "o", "ffn.0", "ffn.2"), seed=0)
        opt = torch.optim.AdamW(params, lr=settings.lr, weight_decay=1e-2)
        sigmas = training_sigmas(args.shift)
        gen = torch.Generator().manual_seed(0)
        z0 = c["latent"][None]
        t0 = time.time()
        transformer.train()
        for step in range(args.steps):
            sigma = sigmas[torch.randint(len(sigmas), (1,), generator=gen)]
            noise = torch.randn(z0.shape, generator=gen)
            z_t = (1 - sigma) * z0 + sigma * noise
            u = transformer(z_t, sigma * 1000, embeds, return_dict=False)[0].float()
            fm = ((u - (noise - z0)) ** 2).mean()
            loss = args.flow_weight * fm
            entry = {"step": step, "sigma": float(sigma), "flow": float(fm)}
            if args.mora_weight and float(sigma) <= args.max_sigma:
                s = starts[step % len(starts)]
                frames = decode_window(vae, one_step_z0(z_t, u, sigma), s, window, drop, checkpoint=False)
                ref = decoded[s] if args.reference == "decoded" else window_ref_flows(flows, s, window, drop)
                m = mora_loss(frames, ref, flow_fn, units=args.units)
                loss = loss + args.mora_weight * m
                entry["mora"] = float(m)
            if loss.requires_grad:
                opt.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                opt.step()
            log.append(entry)
            if step % 10 == 0:
                print(json.dumps(entry), flush=True)
        transformer.eval()
        lora_path.parent.mkdir(parents=True, exist_ok=True)
        export_lora(transformer, "motion", lora_path, settings.motion_rank, float(settings.motion_rank), "motion")
        transformer.delete_adapters(["motion"])
        (lora_path.parent / "log.json").write_text(json.dumps({"seconds": time.time() - t0, "log": log}))
    lora = load_lora(lora_path)
    rows = []
    for label, motion in (("none", None), (name, lora)):
        for seed in [int(s) for s in args.seeds.split(",")]:
            config = GenerateConfig(prompt=c["text"], frames=settings.frames, height=settings.size,
                                    width=settings.size, steps=settings.gen_steps, guidance=settings.guidance,
                                    seed=seed, injection="dense", fps=settings.fps)
            frames = generate(pipe, config, None, motion, progress=False).frames
            rows.append({"lora": label, "seed": seed, **path_scores(frames, c["truth"], settings.size)})
            print(json.dumps(rows[-1]), flush=True)
    mora_log = [e["mora"] for e in json.loads((lora_path.parent / "log.json").read_text())["log"] if "mora" in e]
    summary = {"lora": name, "mora_first": float(np.mean(mora_log[:10])) if mora_log else float("nan"),
               "mora_last": float(np.mean(mora_log[-10:])) if mora_log else float("nan")}
    result_file = out / "alone.json"
    prev = json.loads(result_file.read_text()) if result_file.is_file() else []
    prev.append({"summary": summary, "rows": rows, "clip": c["text"]})
    result_file.write_text(json.dumps(prev, indent=1))
    print(json.dumps(summary))
    print(table(rows, ["lora", "seed", "err", "traj", "travel", "size", "family"]))
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    for name in ("links", "alone"):
        s = sub.add_parser(name)
        s.add_argument("--out", required=True)
        s.add_argument("--model", default=None)
        s.add_argument("--family", default="spiral")
        s.add_argument("--clips", type=int, default=2)
    links = sub.choices["links"]
    links.add_argument("--draws", type=int, default=3, help="noise draws per sigma (one-step and gradients)")
    links.add_argument("--links", default="flow,mapping,trivial,one-step,gradients", help="which links to measure")
    links.add_argument("--sigmas", default=",".join(map(str, SIGMAS)), help="noise levels (one-step, gradients)")
    alone = sub.choices["alone"]
    alone.add_argument("--clip", type=int, default=0)
    alone.add_argument("--steps", type=int, default=60)
    alone.add_argument("--flow-weight", type=float, default=0.0)
    alone.add_argument("--mora-weight", type=float, default=1.0)
    alone.add_argument("--max-sigma", type=float, default=1.0)
    alone.add_argument("--units", default="pixels", choices=["pixels", "size"])
    alone.add_argument("--shift", type=float, default=5.0)
    alone.add_argument("--seeds", default="0,1")
    alone.add_argument("--reference", default="frames", choices=["frames", "decoded"],
                       help="MoRA's target: the flows of the clip's frames (the method's), or of its clean latent "
                            "decoded window by window as z0_hat is (what this VAE can show)")
    args = p.parse_args()
    torch.manual_seed(0)
    return run_links(args) if args.command == "links" else run_alone(args)


if __name__ == "__main__":
    raise SystemExit(main())
