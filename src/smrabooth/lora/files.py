"""Reading, writing and checking LoRA files.

Files are safetensors in diffusers' key format (`transformer.blocks.0.attn1.to_q.lora_A.weight`)
with diffusers' adapter metadata (rank, alpha, target modules), so stock
`WanPipeline.load_lora_weights(file)` loads them as they are. smrabooth adds its own metadata
entry (`smrabooth`: kind, base-model sizes) used to check a LoRA against the model it is loaded into.
ComfyUI and DiffSynth files are read too (see `convert.py`).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import SmraboothError
from ..logs import get_logger
from ..readers import short_repr
from .convert import detect_format, from_canonical, to_canonical
from .targets import ALL_LAYER_TYPES, layer_type_of, module_suffixes

log = get_logger(__name__)

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

    def filtered(self, layer_types) -> LoraWeights:
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
    from safetensors import SafetensorError
    from safetensors.torch import save_file

    path = Path(path)
    if not path.parent.exists():
        raise SmraboothError(f"folder {path.parent} does not exist: create it first or choose another output path")
    check_lora_pairs(weights.tensors, path)
    check_finite(weights.tensors, f"refusing to write {path}")
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
    try:
        save_file({k: v.contiguous() for k, v in out.items()}, str(tmp), metadata=metadata)
        os.replace(tmp, path)
    except (OSError, SafetensorError) as e:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise SmraboothError(f"could not write {path} ({e}); nothing was written") from None
    return path


LORA_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)


def check_finite(tensors: dict[str, torch.Tensor], what) -> None:
    """Every tensor a float of a dtype LoRA loaders apply (an int8 or float8 LoRA would be added as raw
    integers), with no NaN or infinite value: such a LoRA turns every video black."""
    for key, value in tensors.items():
        if value.dtype not in LORA_DTYPES:
            raise SmraboothError(f"{what}: tensor {key} is {str(value.dtype).replace('torch.', '')}; a LoRA holds "
                                 "float32, float16 or bfloat16 weights (a quantized LoRA is not supported)")
        if not bool(torch.isfinite(value).all()):
            raise SmraboothError(f"{what}: tensor {key} holds NaN or infinite values; this LoRA is broken "
                                 "(retrain it, or resume from an earlier checkpoint)")


def check_lora_pairs(tensors: dict[str, torch.Tensor], what) -> int:
    """Every module has one lora_A (rank x in) and one lora_B (out x rank) of one common rank; returns it."""
    modules: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        module, rest = key.rsplit(".lora_", 1)
        modules.setdefault(module, {})[rest[0]] = value
    ranks = set()
    for module, pair in modules.items():
        if set(pair) != {"A", "B"}:
            missing = "lora_B" if "A" in pair else "lora_A"
            raise SmraboothError(f"{what}: {module} has no {missing} tensor (a LoRA layer needs lora_A and lora_B)")
        a, b = pair["A"], pair["B"]
        if a.ndim != 2 or b.ndim != 2:
            raise SmraboothError(f"{what}: {module} has lora_A of shape {tuple(a.shape)} and lora_B of shape "
                                 f"{tuple(b.shape)}; both must be matrices")
        if a.shape[0] != b.shape[1]:
            raise SmraboothError(f"{what}: {module} has lora_A of rank {a.shape[0]} but lora_B of rank {b.shape[1]} "
                                 f"(shapes {tuple(a.shape)} and {tuple(b.shape)}); the file is inconsistent")
        if a.shape[0] == 0:
            raise SmraboothError(f"{what}: {module} has rank 0 (lora_A of shape {tuple(a.shape)}); the file is empty")
        ranks.add(a.shape[0])
    if not ranks:
        raise SmraboothError(f"{what}: holds no LoRA layers")
    if len(ranks) != 1:
        raise SmraboothError(f"{what}: LoRA layers have different ranks {sorted(ranks)}; smrabooth needs one rank")
    return ranks.pop()


def load_lora(path: str | os.PathLike, flag: str = "LoRA file") -> LoraWeights:
    """Read a diffusers, ComfyUI or DiffSynth Wan LoRA, with clear errors for anything else: tensors that
    are not LoRA pairs of one rank, widths that disagree with the model recorded in the file, NaN/Inf."""
    from ..readers import read_safetensors
    from ..validation import check_readable

    path = check_readable(flag, path, "file")
    try:
        state_dict, metadata = read_safetensors(path, "safetensors LoRA file")
    except SmraboothError as e:
        raise SmraboothError(f"{flag} {path}: not a readable safetensors LoRA file ({str(e).split(' (', 1)[-1]}") \
            from None

    fmt = detect_format(state_dict)
    if fmt is None and any(k.startswith("unet.") for k in state_dict):
        raise SmraboothError(f"{path} is a U-Net (ZeroScope) LoRA, but --model is a Wan model: pass a LoRA trained "
                             f"on Wan, or a ZeroScope model")
    if fmt is None:
        first = ", ".join(list(state_dict)[:3]) or "no tensors"
        raise SmraboothError(
            f"{path} is not a Wan LoRA: expected lora_A/lora_B tensors of transformer blocks, found {first}"
        )
    try:
        tensors, file_alpha = to_canonical(state_dict, fmt)
    except SmraboothError as e:
        raise SmraboothError(f"{path}: {e}") from None

    rank = check_lora_pairs(tensors, path)
    check_finite(tensors, path)
    from ..readers import metadata_json

    info = metadata_json(metadata, SMRABOOTH_METADATA_KEY, path)
    adapter = metadata_json(metadata, DIFFUSERS_METADATA_KEY, path)
    alpha = adapter.get("transformer.lora_alpha", file_alpha)
    if alpha is None:
        # DiffSynth and alpha-less ComfyUI files apply no rank scaling: alpha == rank reproduces that.
        alpha = float(rank)
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not math.isfinite(alpha) or alpha == 0:
        raise SmraboothError(f"{path}: its alpha {alpha!r} is not a finite non-zero number")
    for key in ("rank", "alpha", "layer_types"):
        info.pop(key, None)
    if "token" in info and info["token"] is None:  # trained on captions without a token (files before 2026-12-05)
        del info["token"]
    odd = next((k for k in ("kind", "token", "recipe", "source_format", "expert")
                if k in info and not isinstance(info[k], str)), None)
    if odd:
        raise SmraboothError(f"{path}: its metadata's {odd} {short_repr(info[odd])} is not text; the file is damaged")
    if "expert" in info and info["expert"] not in ("high", "low"):  # which Wan2.2 A14B expert it goes into
        raise SmraboothError(f"{path}: its metadata's expert {short_repr(info['expert'])} is not high or low (Wan2.2 "
                             "A14B's two experts); the file is damaged")
    info["source_format"] = fmt
    if "expert" not in info and SMRABOOTH_METADATA_KEY not in metadata and expert_from_name(path):
        info["expert"] = expert_from_name(path)  # another tool's Wan2.2 A14B file: its name says the expert
    weights = LoraWeights(tensors, int(rank), float(alpha), info)
    base = info.get("base")
    if base is not None and not _is_base(base):
        raise SmraboothError(f"{path}: its metadata's base {short_repr(base)} is not a model's sizes (num_layers, dim, "
                             "ffn_dim: whole numbers); the file is damaged")
    if base is not None:
        check_widths(weights, base, path)
    else:
        check_consistent_widths(weights, path)
    return weights


def lora_file_format(path) -> str | None:
    """The key format (convert.FORMATS) of a safetensors file's tensors, None when it is none of them or unreadable."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            return detect_format(list(f.keys()))
    except (SafetensorError, OSError, ValueError):
        return None


_EXPERT_IN_NAME = re.compile(r"(?<![a-z0-9])(high|low)(?:[_-]noise)?(?![a-z0-9])", re.IGNORECASE)


def expert_from_name(path) -> str | None:
    """A Wan2.2 A14B expert named in a LoRA file's name, as ComfyUI's and DiffSynth-Studio's files name it
    (`..._high_noise.safetensors`, `..._low_noise_lora/`, `..._low.safetensors`): their keys carry none."""
    for name in (Path(path).stem, Path(path).parent.name):  # DiffSynth: output folder ..._high_noise_lora/epoch-4
        found = {m.group(1).lower() for m in _EXPERT_IN_NAME.finditer(name)}
        if found:
            return found.pop() if len(found) == 1 else None
    return None


def run_lora_files(run_dir, kind: str) -> list[Path]:
    """The LoRA files a finished training run wrote for `kind` (subject, motion): <kind>_lora.safetensors, or one per
    trained Wan2.2 A14B expert (<kind>_lora_high/_low.safetensors)."""
    run_dir = Path(run_dir)
    single = run_dir / f"{kind}_lora.safetensors"
    if single.is_file():
        return [single]
    return [p for e in ("high", "low") if (p := run_dir / f"{kind}_lora_{e}.safetensors").is_file()]


def with_expert_siblings(path) -> list[Path]:
    """A LoRA file and, when it is one expert's file of a training run (<kind>_lora_high.safetensors), the other
    expert's file beside it: what one choice of a run's LoRA means on Wan2.2 A14B."""
    path = Path(path)
    m = re.match(r"^(.*_lora)_(high|low)$", path.stem)
    if not m:
        return [path]
    other = path.with_name(f"{m.group(1)}_{'low' if m.group(2) == 'high' else 'high'}{path.suffix}")
    return [path, other] if other.is_file() else [path]


def recorded_recipe(path: str | os.PathLike) -> str | None:
    """The recipe a LoRA file says it was trained with (its smrabooth metadata), read without its tensors; None
    when it records none (a LoRA from elsewhere) or cannot be read (`load_lora` then says why)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            info = json.loads((f.metadata() or {}).get(SMRABOOTH_METADATA_KEY, "{}"))
    except Exception:  # noqa: BLE001  (any unreadable file: load_lora reports it properly)
        return None
    recipe = info.get("recipe") if isinstance(info, dict) else None
    return recipe if isinstance(recipe, str) else None


def _is_base(base) -> bool:
    return isinstance(base, dict) and all(isinstance(base.get(k), int) and not isinstance(base.get(k), bool)
                                          and base[k] > 0 for k in ("num_layers", "dim", "ffn_dim"))


def warn_if_other_kind(weights: LoraWeights | None, kind: str, flag: str) -> None:
    """A motion LoRA given as the subject LoRA (or the reverse) loads, but is probably a mistake."""
    made = weights.info.get("kind") if weights is not None else None
    if made and made != kind:
        log.warning(f"{flag} is a {made} LoRA (trained by train-{made}), given as the {kind} LoRA")


def check_consistent_widths(weights: LoraWeights, path) -> None:
    """Without the base model's sizes in the file: each layer type has one input and one output width."""
    seen: dict[str, tuple[int, int]] = {}
    for module in weights.modules:
        suffix = module.split(".", 2)[2]
        shape = (weights.tensors[f"{module}.lora_A.weight"].shape[1], weights.tensors[f"{module}.lora_B.weight"].shape[0])
        if seen.setdefault(suffix, shape) != shape:
            raise SmraboothError(f"{path}: {module} maps {shape[0]} -> {shape[1]} but other {suffix} layers map "
                                 f"{seen[suffix][0]} -> {seen[suffix][1]}; the file is inconsistent")


def check_lora_fits(weights: LoraWeights, transformer_config, path: str | os.PathLike = "LoRA") -> None:
    """Raise a clear error when a LoRA was made for a different model size."""
    check_widths(weights, base_model_info(transformer_config), path, made_for=weights.info.get("base"))


def check_widths(weights: LoraWeights, base: dict, path, made_for: dict | None = None) -> None:
    """Every module's block index and input/output widths fit a model of sizes `base` (base_model_info)."""
    dim, ffn = base["dim"], base["ffn_dim"]
    expected_in = {"ffn.net.0.proj": dim, "ffn.net.2": ffn}
    expected_out = {"ffn.net.0.proj": ffn, "ffn.net.2": dim}
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
        *([f"expert:       {weights.info['expert']} noise (Wan2.2 A14B)"] if weights.info.get("expert") else []),
        f"recipe:       {weights.info.get('recipe', 'not recorded')}",
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
