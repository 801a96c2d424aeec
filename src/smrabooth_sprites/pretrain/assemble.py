"""Stage `assemble`: every stage's final weights into one SMRA-Sprites bundle (bundle.py).

The VAE keeps the latent statistics the vae stage measured (latent_stats.json), not new ones: the
DiT was trained on latents normalised with exactly those, so they belong together. They are measured
here only when the vae stage never wrote them.
"""

from __future__ import annotations

import json
from pathlib import Path

from smrabooth.errors import SmraboothError

from .common import CONFIG_FILE, STAGES, STATE_FILE, SUMMARY_FILE, load_modules, load_state_file, read_config

# stage -> (module name in state.pt, where it goes in SpritesModels)
TARGETS = {"vae": "vae", "dit": "transformer", "dinov2": "dinov2", "searaft": "searaft"}
# the data settings of each stage, recorded in sprites.json
RECORDED = ("frames", "size", "clips", "sprite_weight", "pool", "image_fraction", "stills", "sprite_scale",
            "partial_captions", "decoder_only", "seed")


def model_parts(models) -> dict:
    """A SpritesModels' trained parts by the names of TARGETS' values."""
    return {"vae": models.pipe.vae, "transformer": models.pipe.transformer, "dinov2": models.dinov2,
            "searaft": models.searaft}


def assemble_bundle(out: str | Path, bundle_out: str | Path | None = None, preset: str | None = None,
                    seed: int = 0, overwrite: bool = False, partial: bool = False,
                    base: str | Path | None = None, version: str | None = None) -> Path:
    """Load each stage's state.pt into `build_sprites_models(preset)` and save the bundle.

    `base`: a bundle that supplies the parts with no stage folder here (default: the bundle the dit stage
    started from with --init-from), so continuing one part of a shipped bundle gives a whole bundle.
    `partial`: stages not trained and not in a base keep their random weights (recorded in sprites.json).
    `version`: a label recorded in sprites.json ("v4")."""
    import torch

    from ..bundle import build_sprites_models, get_preset, read_bundle_info, save_bundle
    from .vae import STATS_FILE, apply_latent_stats, measure_latent_stats

    out = Path(out)
    from smrabooth.run_folder import check_inputs_outside

    target = Path(bundle_out) if bundle_out else out / "bundle"
    if target.exists() and overwrite:  # replacing it must not delete a stage folder it reads
        check_inputs_outside(target, {"stage folder": [out / s for s in STAGES]})
    presets = {read_config(out / s / CONFIG_FILE).preset for s in STAGES if (out / s / CONFIG_FILE).is_file()}
    if len(presets) > 1:
        raise SmraboothError(f"the stages in {out} use different presets ({', '.join(sorted(presets))})")
    if preset is None:
        preset = presets.pop() if presets else "small"
    elif presets and preset not in presets:
        raise SmraboothError(f"the stages in {out} were trained with preset {presets.pop()!r}, not {preset!r}")
    missing = [s for s in STAGES if not (out / s / STATE_FILE).is_file()]
    if base is None and (out / "dit" / CONFIG_FILE).is_file():
        base = read_config(out / "dit" / CONFIG_FILE).init_from or None
    base_models = None
    if base and missing:
        from ..bundle import load_bundle

        base_models = load_bundle(base)
    if missing and not partial and base_models is None:
        raise SmraboothError(f"{out} has no trained {', '.join(missing)} stage (no {STATE_FILE}): train "
                             f"it first, or pass --partial to keep random weights for it")
    models = build_sprites_models(preset, seed)
    modules = model_parts(models)
    info = {}
    for stage in STAGES:
        folder = out / stage
        name = TARGETS[stage]
        if stage in missing and base_models is not None:
            modules[name].load_state_dict(model_parts(base_models)[name].state_dict())
            info[stage] = {**base_models.info.get("training", {}).get(stage, {}), "from_bundle": str(base)}
            continue
        if stage in missing:
            info[stage] = {"trained": False}
            continue
        state = load_state_file(folder / STATE_FILE)
        # the dit stage's EMA weights when it kept them (they sample better than the last step's)
        source = "ema" if stage == "dit" and "ema" in state["modules"] else name
        state["modules"][name] = state["modules"][source]
        load_modules(state, {name: modules[name]}, folder / STATE_FILE)
        summary = json.loads((folder / SUMMARY_FILE).read_text()) if (folder / SUMMARY_FILE).is_file() else {}
        info[stage] = {"trained": True, **{k: summary.get(k) for k in ("steps", "final", "minutes", "batch", "lr",
                                                                        "date")}}
        if "calls" in summary:
            info[stage]["calls"] = summary["calls"]
        cfg = read_config(folder / CONFIG_FILE)
        info[stage]["settings"] = {k: getattr(cfg, k) for k in RECORDED}
        if stage == "dit":
            info[stage]["weights"] = source
        if cfg.init_from:  # the lineage: what this stage continued, and how that was trained
            info[stage]["init_from"] = cfg.init_from
            before = read_bundle_info(cfg.init_from).get("training", {}).get(stage) if Path(cfg.init_from).is_dir() \
                else None
            if before is not None:
                info[stage]["before"] = before
    vae = models.pipe.vae
    if (out / "vae" / STATS_FILE).is_file():
        stats = json.loads((out / "vae" / STATS_FILE).read_text())
    elif "vae" in missing and base_models is not None:  # the base VAE with the statistics it came with
        cfg = base_models.pipe.vae.config
        stats = {"latents_mean": list(cfg.latents_mean), "latents_std": list(cfg.latents_std),
                 "clips": info["vae"].get("latent_stats_clips")}
    else:
        p = get_preset(preset)
        stats = measure_latent_stats(vae, p.frames, p.size, 256, torch.device("cpu"))
    apply_latent_stats(vae, stats)
    info["vae"]["latent_stats_clips"] = stats.get("clips")
    models.info = {"training": info, **({"version": version} if version else {})}
    for m in modules.values():
        m.eval()
    return save_bundle(models, bundle_out or out / "bundle", overwrite=overwrite)
