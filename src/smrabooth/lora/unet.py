"""LoRAs of a ZeroScope `UNet3DConditionModel`: where they go, and their files.

Where. The subject LoRA lives in the SPATIAL transformers (the `Transformer2DModel`s,
`*.attentions.N`, of the down, mid and up blocks), the motion LoRA in the TEMPORAL ones (the
`TransformerTemporalModel`s, `*.temp_attentions.N` and `transformer_in`). Inside each, the six layer
types of the DiT path apply with diffusers' U-Net names: q/k/v/o of `attn1` and `attn2`, `ff.net.0.proj`
(ffn.0) and `ff.net.2` (ffn.2). The two sets are disjoint, so the DiT's sparse layer split has nothing
to separate here; generation applies only its timing.

Files. `UNet3DConditionModel` has no diffusers LoRA loader (no `PeftAdapterMixin`), so adapters are
injected with peft directly and saved as safetensors in diffusers' peft key format for U-Nets:

    unet.<module path>.lora_A.weight   (rank, in)
    unet.<module path>.lora_B.weight   (out, rank)
    e.g. unet.down_blocks.0.attentions.1.transformer_blocks.0.attn1.to_q.lora_A.weight

with the metadata entry `smrabooth` (JSON): backbone "unet3d", kind ("subject"/"motion"), location
("spatial"/"temporal"), rank, alpha (scale alpha/rank), layer_types, and `base` (the U-Net's
block_out_channels, cross_attention_dim, attention_head_dim, layers_per_block) used to check a file
against the model it is loaded into.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import SmraboothError
from .targets import ALL_LAYER_TYPES

PREFIX = "unet."
BACKBONE = "unet3d"
METADATA_KEY = "smrabooth"
LOCATIONS = {"subject": "spatial", "motion": "temporal"}

# layer type -> module suffixes inside a BasicTransformerBlock of the U-Net
UNET_LAYER_TYPES: dict[str, tuple[str, ...]] = {
    "q": ("attn1.to_q", "attn2.to_q"),
    "k": ("attn1.to_k", "attn2.to_k"),
    "v": ("attn1.to_v", "attn2.to_v"),
    "o": ("attn1.to_out.0", "attn2.to_out.0"),
    "ffn.0": ("ff.net.0.proj",),
    "ffn.2": ("ff.net.2",),
}
# the transformer modules of each location (module paths, full match)
_LOCATION_PATTERNS = {
    "spatial": r"(down_blocks\.\d+|mid_block|up_blocks\.\d+)\.attentions\.\d+",
    "temporal": r"((down_blocks\.\d+|mid_block|up_blocks\.\d+)\.temp_attentions\.\d+|transformer_in)",
}


def target_pattern(location: str, layer_types=ALL_LAYER_TYPES) -> str:
    """peft `target_modules` regex (full match) for the layer types of one location."""
    suffixes = "|".join(re.escape(s) for t in layer_types for s in UNET_LAYER_TYPES[t])
    return rf"{_LOCATION_PATTERNS[location]}\.transformer_blocks\.\d+\.({suffixes})"


def layer_type_of(module_path: str) -> str | None:
    for name, suffixes in UNET_LAYER_TYPES.items():
        if any(module_path.endswith("." + s) for s in suffixes):
            return name
    return None


def location_of(module_path: str) -> str | None:
    for location, pattern in _LOCATION_PATTERNS.items():
        if re.match(rf"(unet\.)?{pattern}\.", module_path):
            return location
    return None


def add_unet_adapter(unet, name: str, rank: int, alpha: float, location: str, layer_types=ALL_LAYER_TYPES,
                     seed: int = 0) -> list[torch.nn.Parameter]:
    """Freeze the U-Net, inject a peft LoRA `name` into `location`'s layers (initialised from `seed`),
    make it the active adapter; LoRA params in fp32. Returns them."""
    from peft import LoraConfig, inject_adapter_in_model

    from ..train.common import seeded

    unet.requires_grad_(False)
    config = LoraConfig(r=rank, lora_alpha=alpha, init_lora_weights=True,
                        target_modules=target_pattern(location, layer_types))
    with seeded(seed):
        inject_adapter_in_model(config, unet, adapter_name=name)
    set_active_adapters(unet, [name])
    params = [p for n, p in unet.named_parameters() if f".{name}." in n and "lora_" in n]
    for p in params:
        p.requires_grad_(True)
        p.data = p.data.float()
    return params


def set_active_adapters(unet, names: list[str]) -> None:
    """Make exactly `names` the adapters every LoRA layer runs (peft's tuner-layer API)."""
    from peft.tuners.lora import LoraLayer

    for module in unet.modules():
        if isinstance(module, LoraLayer):
            module.set_adapter([n for n in names if n in module.lora_A])


def remove_adapters(unet) -> None:
    """Take every injected LoRA out of the U-Net again (the base layers come back as they were)."""
    from peft.tuners.lora import LoraLayer

    for name, module in list(unet.named_modules()):
        if isinstance(module, LoraLayer):
            parent_name, _, child = name.rpartition(".")
            setattr(unet.get_submodule(parent_name) if parent_name else unet, child, module.get_base_layer())
    if hasattr(unet, "peft_config"):
        del unet.peft_config


def unet_base_info(config) -> dict:
    """The sizes of a UNet3DConditionModel a LoRA depends on."""
    return {"block_out_channels": [int(c) for c in config.block_out_channels],
            "cross_attention_dim": int(config.cross_attention_dim),
            "attention_head_dim": int(config.attention_head_dim)
            if isinstance(config.attention_head_dim, int) else list(config.attention_head_dim),
            "layers_per_block": int(config.layers_per_block)}


@dataclass
class UnetLora:
    """A U-Net LoRA: tensors keyed by module path without the `unet.` prefix."""

    tensors: dict[str, torch.Tensor]
    rank: int
    alpha: float
    info: dict = field(default_factory=dict)  # kind, location, base, ...

    @property
    def modules(self) -> list[str]:
        return sorted({k.rsplit(".lora_", 1)[0] for k in self.tensors})

    @property
    def layer_types(self) -> tuple[str, ...]:
        found = {layer_type_of(m) for m in self.modules}
        return tuple(t for t in ALL_LAYER_TYPES if t in found)


def unet_lora_from_peft(unet, adapter: str, kind: str, extra_info: dict | None = None) -> UnetLora:
    from peft.utils import get_peft_model_state_dict

    config = unet.peft_config[adapter]
    tensors = {k: v.detach().cpu().contiguous() for k, v in get_peft_model_state_dict(unet, adapter_name=adapter).items()}
    info = {"backbone": BACKBONE, "kind": kind, "location": LOCATIONS[kind], "base": unet_base_info(unet.config),
            **(extra_info or {})}
    return UnetLora(tensors, int(config.r), float(config.lora_alpha), info)


def save_unet_lora(path: str | os.PathLike, lora: UnetLora, dtype: torch.dtype | None = None) -> Path:
    """Write atomically (temp file + rename) in the key format of the module docstring."""
    from safetensors.torch import save_file

    path = Path(path)
    tensors = {PREFIX + k: (v.to(dtype) if dtype is not None else v).contiguous() for k, v in lora.tensors.items()}
    meta = {**lora.info, "rank": lora.rank, "alpha": lora.alpha, "layer_types": list(lora.layer_types)}
    tmp = path.with_name(f".{path.name}.tmp")
    save_file(tensors, str(tmp), metadata={"format": "pt", METADATA_KEY: json.dumps(meta)})
    os.replace(tmp, path)
    return path


def is_unet_lora_file(path: str | os.PathLike) -> bool:
    """Whether a safetensors file holds a U-Net LoRA (its keys start with `unet.`)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            return any(k.startswith(PREFIX) for k in f.keys())
    except (SafetensorError, OSError, ValueError):
        return False  # not safetensors: the Wan reader reports it


def load_unet_lora(path: str | os.PathLike) -> UnetLora:
    """Read a U-Net LoRA file, checked like a Wan LoRA (lora/files.py): a clear error for a Wan (DiT) LoRA or
    anything else, for layers without both lora_A and lora_B of one rank, for tensors that are not float weights
    (int8) or hold NaN/Inf, and for metadata of the wrong type."""
    import math

    from ..readers import metadata_json, read_safetensors, short_repr
    from .files import check_finite, check_lora_pairs

    path = Path(path)
    if not path.is_file():
        raise SmraboothError(f"LoRA file {path} does not exist")
    tensors, metadata = read_safetensors(path, "safetensors LoRA file")
    if not any(k.startswith(PREFIX) for k in tensors):
        wan = any(".blocks." in k or k.startswith(("blocks.", "transformer.", "diffusion_model.")) for k in tensors)
        what = "a Wan (DiT) LoRA" if wan else f"not a U-Net LoRA (first key {next(iter(tensors), 'none')})"
        raise SmraboothError(f"{path} is {what}, but --model is a ZeroScope U-Net: pass a LoRA trained on "
                             f"ZeroScope, or a Wan model")
    bad = [k for k in tensors if not (k.startswith(PREFIX) and k.endswith((".lora_A.weight", ".lora_B.weight")))]
    if bad:
        raise SmraboothError(f"{path}: unexpected tensor {bad[0]} (a U-Net LoRA holds only unet.*.lora_A/B.weight)")
    rank = check_lora_pairs(tensors, path)
    check_finite(tensors, path)
    info = metadata_json(metadata, METADATA_KEY, path)
    alpha = info.pop("alpha", rank)
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not math.isfinite(alpha) or alpha == 0:
        raise SmraboothError(f"{path}: its alpha {short_repr(alpha)} is not a finite non-zero number")
    if info.get("rank", rank) != rank:
        raise SmraboothError(f"{path}: its metadata says rank {short_repr(info.get('rank'))} but its tensors have "
                             f"rank {rank}; the file is inconsistent")
    odd = next((k for k in ("kind", "location", "backbone") if k in info and not isinstance(info[k], str)), None)
    if odd or ("base" in info and not isinstance(info["base"], dict)):
        odd = odd or "base"
        raise SmraboothError(f"{path}: its metadata's {odd} {short_repr(info[odd])} is of the wrong type; the file "
                             "is damaged")
    info.pop("rank", None)
    info.pop("layer_types", None)
    return UnetLora({k[len(PREFIX):]: v for k, v in tensors.items()}, int(rank), float(alpha), info)


def describe_unet_lora(lora: UnetLora) -> str:
    """The text `smrabooth lora info` prints for a U-Net LoRA."""
    n_params = sum(v.numel() for v in lora.tensors.values())
    dtypes = sorted({str(v.dtype).replace("torch.", "") for v in lora.tensors.values()})
    lines = [f"format:       smrabooth U-Net ({lora.info.get('backbone', BACKBONE)})",
             f"kind:         {lora.info.get('kind', 'unknown')} ({lora.info.get('location', '?')} layers)",
             f"rank:         {lora.rank}",
             f"alpha:        {lora.alpha:g} (scale alpha/rank = {lora.alpha / lora.rank:g})",
             f"layer types:  {', '.join(lora.layer_types)}",
             f"layers:       {len(lora.modules)}",
             f"parameters:   {n_params:,} ({', '.join(dtypes)})"]
    if "base" in lora.info:
        lines.append(f"base model:   UNet3D, block_out_channels {lora.info['base'].get('block_out_channels', '?')}")
    return "\n".join(lines)


def check_unet_lora_fits(lora: UnetLora, unet, path: str | os.PathLike = "LoRA") -> None:
    """Raise a clear error when a LoRA was made for another U-Net (missing module or other width)."""
    made_for = lora.info.get("base")
    hint = f" (it was made for a U-Net with block_out_channels {made_for.get('block_out_channels', '?')})" if made_for else ""
    ours = f"the model's U-Net has block_out_channels {list(unet.config.block_out_channels)}"
    for key, value in lora.tensors.items():
        module_path = key.rsplit(".lora_", 1)[0]
        try:
            linear = unet.get_submodule(module_path)
        except AttributeError:
            raise SmraboothError(f"{path} was made for another model: {ours} and no layer {module_path}{hint}") from None
        linear = getattr(linear, "base_layer", linear)
        want = (value.shape[0], linear.in_features) if key.endswith("lora_A.weight") else (linear.out_features,
                                                                                             value.shape[1])
        if tuple(value.shape) != want:
            raise SmraboothError(f"{path} was made for another model size: {key} is {tuple(value.shape)}, the "
                                 f"model needs {want}; {ours}{hint}")


def load_unet_loras(unet, loras: dict[str, UnetLora], paths: dict[str, str] | None = None) -> list:
    """Inject each named LoRA as a peft adapter with its weights, all active; returns the LoRA layers."""
    from peft import LoraConfig, inject_adapter_in_model, set_peft_model_state_dict

    from .inject import lora_layers

    paths = paths or {}
    for name, lora in loras.items():
        check_unet_lora_fits(lora, unet, paths.get(name) or f"{name} LoRA")
        modules = "|".join(re.escape(m) for m in lora.modules)
        config = LoraConfig(r=lora.rank, lora_alpha=lora.alpha, target_modules=f"({modules})")
        inject_adapter_in_model(config, unet, adapter_name=name)
        device = next(unet.parameters()).device
        set_peft_model_state_dict(unet, {k: v.to(device) for k, v in lora.tensors.items()}, adapter_name=name)
    set_active_adapters(unet, list(loras))
    return lora_layers(unet)
