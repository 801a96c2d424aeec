"""LoRA key formats for Wan2.1: diffusers, ComfyUI (original Wan names) and DiffSynth-Studio.

One block's q projection of self-attention, in each format:
  diffusers  transformer.blocks.0.attn1.to_q.lora_A.weight
  comfyui    diffusion_model.blocks.0.self_attn.q.lora_A.weight   (+ ...self_attn.q.alpha)
  diffsynth  blocks.0.self_attn.q.lora_A.default.weight   (peft's adapter name: the SMRABooth authors' trainers
             write spatial_lora / temporal_lora there)

Scale conventions differ, and that is what usually breaks LoRAs moved between tools:
- diffusers/peft apply B @ A * alpha / rank, alpha stored in the file's adapter metadata;
- ComfyUI applies alpha / rank when a `.alpha` tensor is present, and 1 otherwise;
- DiffSynth applies B @ A times the user's strength (1.0), with no rank scaling: it trains with
  alpha == rank. So when alpha != rank the scale is baked into lora_B on export to DiffSynth.
"""

from __future__ import annotations

import re

import torch

from ..errors import SmraboothError

FORMATS = ("diffusers", "comfyui", "diffsynth")

# diffusers module suffix inside a block <-> original Wan module suffix
_TO_ORIGINAL = {
    "attn1.to_q": "self_attn.q",
    "attn1.to_k": "self_attn.k",
    "attn1.to_v": "self_attn.v",
    "attn1.to_out.0": "self_attn.o",
    "attn2.to_q": "cross_attn.q",
    "attn2.to_k": "cross_attn.k",
    "attn2.to_v": "cross_attn.v",
    "attn2.to_out.0": "cross_attn.o",
    "ffn.net.0.proj": "ffn.0",
    "ffn.net.2": "ffn.2",
}
_TO_DIFFUSERS = {v: k for k, v in _TO_ORIGINAL.items()}

_DIFFUSERS_KEY = re.compile(r"^(?:transformer\.)?(blocks\.\d+\.[\w.]+?)\.lora_([AB])\.weight$")
_COMFY_KEY = re.compile(r"^diffusion_model\.(blocks\.\d+\.[\w.]+?)\.(?:lora_([AB])\.weight|(alpha))$")
_DIFFSYNTH_KEY = re.compile(r"^(blocks\.\d+\.(?:self_attn|cross_attn|ffn)\.[\w.]+?)\.lora_([AB])\.(\w+)\.weight$")


def detect_format(keys) -> str | None:
    """Which of FORMATS a set of tensor names is in (None when it is none of them)."""
    keys = list(keys)
    if not keys:
        return None
    if all(k.startswith("diffusion_model.") for k in keys):
        return "comfyui"
    lora_keys = [k for k in keys if ".lora_" in k]
    if lora_keys and all(_DIFFSYNTH_KEY.match(k) for k in lora_keys):
        return "diffsynth"
    if any(_DIFFUSERS_KEY.match(k) for k in keys):
        return "diffusers"
    return None


def _split_module(path: str, table: dict[str, str], source: str) -> str:
    """Map 'blocks.3.self_attn.q' to 'blocks.3.attn1.to_q' (or back) through `table`."""
    m = re.match(r"^(blocks\.\d+)\.(.+)$", path)
    if not m or m.group(2) not in table:
        raise SmraboothError(f"unsupported LoRA module {path!r} in a {source} file (expected q/k/v/o/ffn layers)")
    return f"{m.group(1)}.{table[m.group(2)]}"


def to_canonical(state_dict: dict[str, torch.Tensor], fmt: str) -> tuple[dict[str, torch.Tensor], float | None]:
    """Convert a state dict in `fmt` to canonical keys ('blocks.0.attn1.to_q.lora_A.weight').

    Returns the tensors and the alpha found in the file (ComfyUI `.alpha` tensors), or None.
    """
    out: dict[str, torch.Tensor] = {}
    alphas: set[float] = set()
    for key, value in state_dict.items():
        if fmt == "diffusers":
            m = _DIFFUSERS_KEY.match(key)
            if not m:
                raise SmraboothError(f"unexpected tensor {key!r} in a diffusers LoRA file")
            module, ab = m.group(1), m.group(2)
            _split_module(module, {v: v for v in _TO_ORIGINAL}, fmt)  # validates the module name
        elif fmt == "comfyui":
            m = _COMFY_KEY.match(key)
            if not m:
                raise SmraboothError(f"unexpected tensor {key!r} in a ComfyUI LoRA file")
            if m.group(3):
                if value.numel() != 1:
                    raise SmraboothError(f"{key} holds {value.numel()} values; a ComfyUI alpha is one number")
                alphas.add(float(value.reshape(-1)[0]))
                continue
            module, ab = _split_module(m.group(1), _TO_DIFFUSERS, fmt), m.group(2)
        elif fmt == "diffsynth":
            if ".lora_" not in key:  # the SMRABooth authors' subject files also hold their SuRA projector (unused here)
                continue
            m = _DIFFSYNTH_KEY.match(key)
            if not m:
                raise SmraboothError(f"unexpected tensor {key!r} in a DiffSynth LoRA file")
            module, ab = _split_module(m.group(1), _TO_DIFFUSERS, fmt), m.group(2)
        else:
            raise SmraboothError(f"unknown LoRA format {fmt!r}: choose from {', '.join(FORMATS)}")
        canonical = f"{module}.lora_{ab}.weight"
        if canonical in out:  # e.g. 'transformer.blocks.0...' and 'blocks.0...' in one file: which would win?
            raise SmraboothError(f"the LoRA holds the layer {module} (lora_{ab}) twice, e.g. as {key!r}; keep one")
        out[canonical] = value
    if len(alphas) > 1:
        raise SmraboothError("this ComfyUI LoRA has different alphas per layer, which smrabooth does not support")
    return out, (alphas.pop() if alphas else None)


def from_canonical(
    tensors: dict[str, torch.Tensor], fmt: str, rank: int, alpha: float
) -> dict[str, torch.Tensor]:
    """Canonical tensors -> `fmt` keys, with that tool's scale convention applied (see module doc)."""
    out: dict[str, torch.Tensor] = {}
    for key, value in tensors.items():
        module, rest = key.rsplit(".lora_", 1)  # rest: 'A.weight' or 'B.weight'
        ab = rest[0]
        if fmt == "diffusers":
            out[f"transformer.{key}"] = value
        elif fmt == "comfyui":
            original = _split_module(module, _TO_ORIGINAL, "canonical")
            out[f"diffusion_model.{original}.lora_{ab}.weight"] = value
            if ab == "A":
                out[f"diffusion_model.{original}.alpha"] = torch.tensor(float(alpha), dtype=torch.float32)
        elif fmt == "diffsynth":
            original = _split_module(module, _TO_ORIGINAL, "canonical")
            if ab == "B" and alpha != rank:
                value = (value.float() * (alpha / rank)).to(value.dtype)
            out[f"{original}.lora_{ab}.default.weight"] = value
        else:
            raise SmraboothError(f"unknown LoRA format {fmt!r}: choose from {', '.join(FORMATS)}")
    return out
