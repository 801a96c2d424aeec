"""Backbones: one module per model family, each a `Backbone` (base.py) that everything above asks.

    wan21.py      Wan2.1 T2V (1.3B, 14B), and the Wan machinery the Wan2.2 forms share
    wan22.py      Wan2.2 A14B (two experts) and TI2V-5B (Wan2.2 VAE, per-token timesteps)
    zeroscope.py  ZeroScope / ModelScope T2V (U-Net, epsilon), the U-Net variant

`backbone_for_model(model, choice)` picks one for a --model (a folder by its model_index.json, a hub id by
its name), `backbone_of(pipe)` for a loaded pipeline. docs/architecture.md says where a new one goes.
"""

from __future__ import annotations

import os

from ..errors import SmraboothError
from .base import EXPERTS, MAIN, Backbone, read_model_index
from .wan21 import WAN21
from .wan22 import WAN22_A14B, WAN22_TI2V
from .zeroscope import ZEROSCOPE

BACKBONES: dict[str, Backbone] = {b.name: b for b in (WAN21, WAN22_A14B, WAN22_TI2V, ZEROSCOPE)}
# --backbone values: auto, a backbone's name, or a family (wan: the Wan form the folder holds; unet: ZeroScope)
CHOICES = ("auto", *BACKBONES, "wan", "unet")


def backbone_for_folder(path) -> Backbone:
    """The backbone whose pipeline a folder's model_index.json describes (Wan2.1 when it names none we know)."""
    index = read_model_index(path) or {}
    for backbone in BACKBONES.values():
        if backbone.matches(index):
            return backbone
    return WAN21


def backbone_for_model(model, choice: str = "auto") -> Backbone:
    """The backbone of a --model (folder or hub id) and a --backbone value."""
    if choice not in CHOICES:
        raise SmraboothError(f"--backbone {choice!r}: choose from {', '.join(CHOICES)}")
    if choice in BACKBONES:
        return BACKBONES[choice]
    if choice == "unet":
        return ZEROSCOPE
    model = str(model or "")
    if os.path.isdir(model) and read_model_index(model) is not None:
        found = backbone_for_folder(model)
    else:
        found = next((b for b in BACKBONES.values() if b.matches_hub_id(model)), WAN21)
    if choice == "wan" and found.family != "wan":
        raise SmraboothError(f"--backbone wan: {model} is a {found.title} model")
    return found


def backbone_of(pipe) -> Backbone:
    """The backbone of a loaded diffusers pipeline, by its class and configuration."""
    name = type(pipe).__name__
    config = getattr(pipe, "config", {}) or {}
    index = {"_class_name": name, **{k: config.get(k) for k in ("boundary_ratio", "expand_timesteps")}}
    if getattr(pipe, "transformer_2", None) is not None:
        index["transformer_2"] = ["diffusers", type(pipe.transformer_2).__name__]
    for backbone in BACKBONES.values():
        if backbone.matches(index):
            return backbone
    raise SmraboothError(f"a {name} is not a pipeline smrabooth runs (it runs {', '.join(b.title for b in BACKBONES.values())})")


def backbone_for_lora_file(path) -> Backbone:
    """The backbone family a LoRA file was made for, by its keys (Wan when none claims it: its reader then says
    what is wrong with the file)."""
    return next((b for b in BACKBONES.values() if b.lora_file_is_mine(path)), WAN21)


__all__ = ["BACKBONES", "CHOICES", "EXPERTS", "MAIN", "Backbone", "backbone_for_folder", "backbone_for_lora_file",
           "backbone_for_model",
           "backbone_of"]
