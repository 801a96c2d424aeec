"""Reading, writing and checking LoRA files.

Files are safetensors in diffusers' key format (`transformer.blocks.0.attn1.to_q.lora_A.weight`)
with diffusers' adapter metadata (rank, alpha, target modules), so stock
`WanPipeline.load_lora_weights(file)` loads them as they are. smrabooth adds its own metadata
entry (`smrabooth`: kind, base-model sizes) used to check a LoRA against the model it is loaded into.
ComfyUI and DiffSynth files are read too (see `convert.py`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import SmraboothError
from .convert import detect_format, from_canonical, to_canonical
from .targets import ALL_LAYER_TYPES, layer_type_of, module_suffixes

DIFFUSERS_METADATA_KEY = "lora_adapter_metadata"  # what diffusers reads
SMRABOOTH_METADATA_KEY = "smrabooth"


@dataclass
class LoraWeights:
    """A Wan LoRA in canonical keys ('blocks.0.attn1.to_q.lora_A.weight', no prefix)."""

    tensors: dict[str, torch.Tensor]
    rank: int
    alpha: float
    info: dict = field(default_factory=dict)  # kind ("subject"/"motion"), base model sizes, ...

    @property
    def modules(self) -> list[str]:
        return sorted({k.rsplit(".lora_", 1)[0] for k in self.tensors}, key=_module_sort_key)

    @property
    def layer_types(self) -> tuple[str, ...]:
        found = {layer_type_of(m) for m in self.modules}
        return tuple(t for t in ALL_LAYER_TYPES if t in found)

    @property
    def num_blocks(self) -> int:
        return len({int(m.split(".")[1]) for m in self.modules})

    def filtered(self, layer_types) -> "LoraWeights":
        """Only the modules of the given layer types (sparse injection)."""
        keep = {k: v for k, v in self.tensors.items() if layer_type_of(k.rsplit(".lora_", 1)[0]) in layer_types}
        return LoraWeights(keep, self.rank, self.alpha, dict(self.info))


def _module_sort_key(module: str):
    parts = module.split(".")
    return (int(parts[1]), ".".join(parts[2:]))


def base_model_info(transformer_config) -> dict:
    """The sizes of a WanTransformer3DModel that a LoRA depends on."""
    c = transformer_config
    return {
        "num_layers": int(c.num_layers),
        "dim": int(c.num_attention_heads * c.attention_head_dim),
        "ffn_dim": int(c.ffn_dim),
    }


def lora_state_dict_from_peft(transformer, adapter_name: str) -> dict[str, torch.Tensor]:
    """Canonical LoRA tensors of one peft adapter in `transformer` (detached, on the CPU)."""
    from peft.utils import get_peft_model_state_dict

    sd = get_peft_model_state_dict(transformer, adapter_name=adapter_name)
    return {k: v.detach().to("cpu").contiguous() for k, v in sd.items()}


def save_lora(path: str | os.PathLike, weights: LoraWeights, fmt: str = "diffusers", dtype=None) -> Path:
    """Write `weights` to `path` atomically (temp file + rename) in format `fmt`."""
    from safetensors.torch import save_file

    path = Path(path)
    if not path.parent.exists():
        raise SmraboothError(f"folder {path.parent} does not exist: create it first or choose another output path")
    tensors = weights.tensors
    if dtype is not None:
        tensors = {k: v.to(dtype) for k, v in tensors.items()}
    out = from_canonical(tensors, fmt, weights.rank, weights.alpha)
    metadata = {"format": "pt", SMRABOOTH_METADATA_KEY: json.dumps({**weights.info, "rank": weights.rank,
                                                                    "alpha": weights.alpha,
                                                                    "layer_types": list(weights.layer_types)})}
    if fmt == "diffusers":
        adapter = {"r": weights.rank, "lora_alpha": weights.alpha,
                   "target_modules": sorted(set(module_suffixes(weights.layer_types)))}
        metadata[DIFFUSERS_METADATA_KEY] = json.dumps({f"transformer.{k}": v for k, v in adapter.items()},
                                                      sort_keys=True)
    tmp = path.with_name(f".{path.name}.tmp")
    save_file({k: v.contiguous() for k, v in out.items()}, str(tmp), metadata=metadata)
    os.replace(tmp, path)
    return path


def load_lora(path: str | os.PathLike) -> LoraWeights:
    """Read a diffusers, ComfyUI or DiffSynth Wan LoRA, with clear errors for anything else."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise SmraboothError(f"LoRA file {path} does not exist")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = f.metadata() or {}
            state_dict = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as e:
        raise SmraboothError(f"{path} is not a readable safetensors LoRA file ({e})") from None

    fmt = detect_format(state_dict)
    if fmt is None:
        first = ", ".join(list(state_dict)[:3]) or "no tensors"
        raise SmraboothError(
            f"{path} is not a Wan LoRA: expected lora_A/lora_B tensors of transformer blocks, found {first}"
        )
    try:
        tensors, file_alpha = to_canonical(state_dict, fmt)
    except SmraboothError as e:
        raise SmraboothError(f"{path}: {e}") from None

    ranks = {v.shape[0] for k, v in tensors.items() if k.endswith("lora_A.weight")}
    if len(ranks) != 1:
        raise SmraboothError(f"{path}: LoRA layers have different ranks {sorted(ranks)}; smrabooth needs one rank")
    rank = ranks.pop()
    info = json.loads(metadata.get(SMRABOOTH_METADATA_KEY, "{}"))
    adapter = json.loads(metadata.get(DIFFUSERS_METADATA_KEY, "{}"))
    alpha = adapter.get("transformer.lora_alpha", file_alpha)
    if alpha is None:
        # DiffSynth and alpha-less ComfyUI files apply no rank scaling: alpha == rank reproduces that.
        alpha = float(rank)
    for key in ("rank", "alpha", "layer_types"):
        info.pop(key, None)
    info["source_format"] = fmt
    return LoraWeights(tensors, int(rank), float(alpha), info)


def check_lora_fits(weights: LoraWeights, transformer_config, path: str | os.PathLike = "LoRA") -> None:
    """Raise a clear error when a LoRA was made for a different model size."""
    base = base_model_info(transformer_config)
    dim, ffn = base["dim"], base["ffn_dim"]
    expected_in = {"ffn.net.0.proj": dim, "ffn.net.2": ffn}
    expected_out = {"ffn.net.0.proj": ffn, "ffn.net.2": dim}
    made_for = weights.info.get("base")
    hint = f" (it was made for a model with {made_for['num_layers']} blocks of width {made_for['dim']})" if made_for else ""
    max_block = max(int(m.split(".")[1]) for m in weights.modules)
    if max_block >= base["num_layers"]:
        raise SmraboothError(
            f"{path} was made for another model size: it has block {max_block} but the model has "
            f"{base['num_layers']} blocks of width {dim}{hint}"
        )
    for key, value in weights.tensors.items():
        module = key.rsplit(".lora_", 1)[0]
        suffix = module.split(".", 2)[2]
        if key.endswith("lora_A.weight"):
            want, got, what = expected_in.get(suffix, dim), value.shape[1], "input"
        else:
            want, got, what = expected_out.get(suffix, dim), value.shape[0], "output"
        if got != want:
            raise SmraboothError(
                f"{path} was made for another model size: {module} has {what} width {got}, the model's is "
                f"{want} (model: {base['num_layers']} blocks of width {dim}){hint}"
            )


def describe_lora(weights: LoraWeights) -> str:
    """The text `smrabooth lora info` prints."""
    n_params = sum(v.numel() for v in weights.tensors.values())
    dtypes = sorted({str(v.dtype).replace("torch.", "") for v in weights.tensors.values()})
    lines = [
        f"format:       {weights.info.get('source_format', 'diffusers')}",
        f"kind:         {weights.info.get('kind', 'unknown')}",
        f"rank:         {weights.rank}",
        f"alpha:        {weights.alpha:g} (scale alpha/rank = {weights.alpha / weights.rank:g})",
        f"layer types:  {', '.join(weights.layer_types)}",
        f"blocks:       {weights.num_blocks}",
        f"layers:       {len(weights.modules)}",
        f"parameters:   {n_params:,} ({', '.join(dtypes)})",
    ]
    if "base" in weights.info:
        b = weights.info["base"]
        lines.append(f"base model:   {b['num_layers']} blocks, width {b['dim']}, ffn {b['ffn_dim']}")
    return "\n".join(lines)
