"""The authors' records against our results, stage by stage: a list of rows (rows.py) per stage."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ours import ADAPTERS, MOTION_STEPS, load_records, their_name_to_ours, their_samples
from rows import ADAM_FRACTION, BF16, FP32, FP32_GRAD, Row, exact_row, tensor_row


def their_stage(folder: Path, stage: str) -> dict:
    """Their records of one training run, with parameter names in ours."""
    records = load_records(folder)
    tensors, meta = records[0]
    names = ADAPTERS[stage]

    def block(prefix):
        return {their_name_to_ours(n[len(prefix):], names): v for n, v in tensors.items() if n.startswith(prefix)}

    steps = [{**m, "grads": block(f"step{k}.grad."), "after": block(f"step{k}.after.")}
             for k, m in enumerate(meta["steps"])]
    samples = their_samples(records)
    reference = tensors.get("reference_flows")
    moves = [s[0] for s in samples if s[0]["train_type"] == "Motion_1"]
    for sample in moves:  # the window their MoRA decoded: their state before the call, unless it went back to 0
        if "window_start_after" in sample:
            slide = moves[0]["window_start_after"] - moves[0]["window_start"]
            after, before = sample["window_start_after"], sample["window_start"]
            sample["window_start"] = before if after - before == slide else after - slide
    for sample, ts, _ in samples:
        sample.setdefault("noise_shape", list(ts["latents"].shape))
        for key in ("input_latents", "zs"):  # one image per sample: its tensors without the batch axis
            if key in ts:
                ts[key] = ts[key][0]
        if "decoded" in ts:  # the frames their MoRA keeps (as many as it has flows + 1), in [0, 1], (F, 3, H, W)
            ts["decoded"] = (ts["decoded"][0, :, -(ts["pred_flows"].shape[0] + 1):].permute(1, 0, 2, 3) + 1) / 2
        if "ref_flows" in ts and reference is not None:  # which reference pairs their MoRA read
            n = ts["ref_flows"].shape[0]
            sample["ref_start"] = next(k for k in range(reference.shape[0] - n + 1)
                                       if torch.equal(reference[k:k + n], ts["ref_flows"]))
    init = {k[5:]: v for k, v in tensors.items() if k.startswith("init.")}
    return {"samples": samples, "steps": steps, "init": init, "active": meta["active_adapters"],
            "init_ours": {their_name_to_ours(k, names): v for k, v in init.items() if "lora_" in k},
            "reference_flows": tensors.get("reference_flows")}


def _common(a: dict, b: dict) -> list[str]:
    return sorted(set(a) & set(b))


def step_rows(prefix: str, theirs: list[dict], ours: list[dict], rel: float, why: str, bf16: bool = False) -> list[Row]:
    """lr, gradients and the LoRA after the last step, for paired optimizer steps."""
    rows = [exact_row(f"{prefix}: lr at each step", [t["lr"][0] for t in theirs], [o["lr"][0] for o in ours],
                      "EXACT: warm-up length and factor")]
    grads_t, grads_o, missing = [], [], []
    for t, o in zip(theirs, ours):
        names = _common(t["grads"], o["grads"])
        missing += sorted(set(t["grads"]) ^ set(o["grads"]))
        grads_t += [t["grads"][n] for n in names]
        grads_o += [o["grads"][n] for n in names]
    row = tensor_row(f"{prefix}: LoRA gradients, {len(theirs)} steps", grads_t, grads_o, rel, why)
    if missing:
        row = Row(row.name, float("inf"), row.tol, row.scale, f"{why} [gradient only on one side: {missing[0]} and "
                                                                f"{len(missing) - 1} more]")
    rows.append(row)
    last_t, last_o = theirs[-1]["after"], ours[-1]["after"]
    names = _common(last_t, last_o)
    lr = max(t["lr"][0] for t in theirs)
    rows.append(tensor_row(f"{prefix}: LoRA after {len(theirs)} steps", [last_t[n] for n in names],
                           [last_o[n] for n in names], BF16 if bf16 else 0.0,
                           "BF16 (the dtype row below is the exact check)" if bf16 else f"ADAM: {ADAM_FRACTION} x lr",
                           floor=0.0 if bf16 else ADAM_FRACTION * lr))
    rows.append(exact_row(f"{prefix}: LoRA and AdamW state dtypes",
                          (theirs[-1]["param_dtypes"], theirs[-1]["state_dtypes"]),
                          (ours[-1]["param_dtypes"], ours[-1]["state_dtypes"]), "EXACT: their peft casts the LoRA to "
                          "the base model's dtype; AdamW keeps its states in it"))
    return rows


def compare_subject(th: dict, ours: dict, tag: str = "subject", bf16: bool = False) -> list[Row]:
    rel, rel_grad, why = (BF16, BF16, "BF16") if bf16 else (FP32, FP32_GRAD, "FP32")
    samples = th["samples"]
    rows = []
    if not bf16:
        rows.append(tensor_row(f"{tag}: VAE latents of each image", [s[1]["input_latents"] for s in samples],
                               [ours["latents"][s[2]] for s in samples], rel, why))
        rows.append(tensor_row(f"{tag}: DINOv2 patch tokens of each image", [s[1]["zs"] for s in samples],
                               [ours["tokens"][s[2]] for s in samples], rel, why + " (their resize and normalisation "
                               "order vs ours)"))
    rows.append(tensor_row(f"{tag}: sigma and w(t) of each sample", [[s[0]["sigma"], s[0]["weight"]] for s in samples],
                           [[o["sigma"], o["weight"]] for o in ours["draws"]], 1e-6,
                           "EXACT up to float32: the timestep table, its rounding and the bell weight"))
    rows.append(tensor_row(f"{tag}: noisy latents z_t", [s[1]["latents"] for s in samples],
                           [i["latents"] for i in ours["inputs"]], rel, why))
    rows.append(tensor_row(f"{tag}: region loss x w(t), per sample", [s[0]["losses"]["region"] for s in samples],
                           [o["flow"] for o in ours["samples"]], rel, why))
    rows.append(tensor_row(f"{tag}: SuRA loss, per sample", [s[0]["losses"]["sura"] for s in samples],
                           [o["sura"] for o in ours["samples"]], rel, why))
    rows += step_rows(tag, th["steps"], ours["steps"], rel_grad, why, bf16=bf16)
    return rows


def compare_motion_phase1(th: dict, ours: dict, tag: str = "motion") -> list[Row]:
    """What their spatial phase leaves behind, against what ours leaves (nothing, without a phase 1)."""
    phase1 = [s for s in th["samples"] if s[0]["train_type"] == "Motion_0"]
    steps1 = th["steps"][:MOTION_STEPS]
    ours_steps1 = ours["steps"][:MOTION_STEPS] if ours["two_phase"] else []
    before2_t = steps1[-1]["after"] if steps1 else th["init_ours"]
    before2_o = ours_steps1[-1]["after"] if ours_steps1 else th["init_ours"]
    names = _common(before2_t, before2_o)
    rows = [tensor_row(f"{tag} phase 1: LoRA after its {len(steps1)} steps (ours: {len(ours_steps1)})",
                       [before2_t[n] for n in names], [before2_o[n] for n in names], 0.0,
                       "EXACT: their phase 1 updates nothing (the spatial LoRA never acts, the temporal one is at "
                       "scale 0)")]
    if ours["two_phase"]:
        rows.append(tensor_row(f"{tag} phase 1: loss per sample", [s[0]["losses"]["flow"] for s in phase1],
                               [o["spatial"] for o in ours["samples"][:len(phase1)]], FP32, "FP32"))
    return rows


def compare_motion(th: dict, ours: dict, tag: str = "motion") -> list[Row]:
    rows = []
    phase1 = [s for s in th["samples"] if s[0]["train_type"] == "Motion_0"]
    phase2 = [s for s in th["samples"] if s[0]["train_type"] == "Motion_1"]
    steps2 = th["steps"][MOTION_STEPS:]
    two = ours["two_phase"]
    ours_steps2 = ours["steps"][MOTION_STEPS:] if two else ours["steps"]
    ours_samples2 = ours["samples"][len(phase1):] if two else ours["samples"]
    ours_inputs2 = [i for i in ours["inputs"] if i["latents"].shape[2] > 1]

    if th["reference_flows"] is not None and ours["reference_flows"]:
        rows.append(tensor_row(f"{tag}: reference flows of the clip (SEA-RAFT)", th["reference_flows"],
                               ours["reference_flows"][0], FP32, "FP32"))
    rows += compare_motion_phase1(th, ours, tag)
    rows.append(exact_row(f"{tag} phase 2: MoRA window starts", [s[0]["window_start"] for s in phase2],
                          ours["window_starts"], "EXACT: start, stride 2, back to 0 when start + 6 reaches the end"))
    rows.append(tensor_row(f"{tag} phase 2: sigma and w(t) of each sample",
                           [[s[0]["sigma"], s[0]["weight"]] for s in phase2],
                           [[o["sigma"], o["weight"]] for o in ours["draws"][-len(phase2):]], 1e-6,
                           "EXACT up to float32"))
    rows.append(tensor_row(f"{tag} phase 2: noisy latents z_t", [s[1]["latents"] for s in phase2],
                           [i["latents"] for i in ours_inputs2], FP32, "FP32"))
    rows.append(tensor_row(f"{tag} phase 2: decoded MoRA window (kept frames)", [s[1]["decoded"] for s in phase2],
                           [o[0] for o in ours["decoded"]], FP32,
                           "FP32 (both decodes tiled: 30x52-latent tiles, 15x26 overlaps)"))
    if ours.get("decode_of_theirs"):
        rows.append(tensor_row(f"{tag} phase 2: our decode of their MoRA window latents",
                               [s[1]["decoded"] for s in phase2], ours["decode_of_theirs"], FP32,
                               "FP32: the decode alone (both tiled, 30x52-latent tiles: at 256x256 two, at their "
                               "576x320 four)"))
    rows.append(tensor_row(f"{tag} phase 2: SEA-RAFT flows of the decoded window", [s[1]["pred_flows"] for s in phase2],
                           ours["pred_flows"], FP32, "FP32"))
    rows.append(tensor_row(f"{tag} phase 2: flow + debiased loss x w(t), per sample",
                           [s[0]["losses"]["flow+debiased"] for s in phase2],
                           [o["flow"] + o.get("debiased", 0.0) for o in ours_samples2], FP32, "FP32"))
    rows.append(tensor_row(f"{tag} phase 2: MoRA loss, per sample", [s[0]["losses"]["mora"] for s in phase2],
                           [o["mora"] for o in ours_samples2], FP32, "FP32"))
    if ours_steps2:
        rows += step_rows(f"{tag} phase 2", steps2, ours_steps2, FP32_GRAD, "FP32")
    return rows


def their_sample(path: Path) -> dict:
    """Their combine_inference.py run: the video as (F, H, W, 3) in [0, 1], as ours."""
    from common import load

    tensors, meta = load(path)
    tensors["video"] = (tensors["video"][0].permute(1, 2, 3, 0) + 1) / 2
    return {**tensors, "meta": meta}


def compare_sample(th: dict, ours: dict) -> list[Row]:
    rows = [tensor_row("inference: initial noise", th["noise"], ours["noise"], 0.0, "EXACT: the same seed"),
            tensor_row("inference: latents after 50 steps", th["latents"], ours["latents"], FP32,
                       "FP32, 100 DiT passes"),
            tensor_row("inference: decoded video", th["video"], torch.as_tensor(ours["video"]), FP32, "FP32"),
            exact_row("inference: negative prompt text", th["meta"]["negative_prompt"], ours["negative_prompt"])]
    if ours.get("load_errors") is not None:
        rows.append(exact_row("inference: their trained LoRA files load in smrabooth", [], ours["load_errors"],
                              "EXACT: no error"))
    return rows
