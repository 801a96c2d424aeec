"""The SMRA-Sprites model bundle: a small Wan2.1-architecture pipeline plus the two alignment encoders.

One folder holds everything the method needs, each part in the class and layout the real models use:

    <bundle>/model_index.json, transformer/, vae/, text_encoder/, tokenizer/, scheduler/
                                   a diffusers WanPipeline folder: `--model <bundle>` works everywhere
    <bundle>/dinov2/               transformers Dinov2Model (SuRA's encoder): `--encoder <bundle>/dinov2`
    <bundle>/searaft/              smrabooth SEA-RAFT folder (MoRA's flow model): `--flow-model <bundle>/searaft`
    <bundle>/sprites.json          preset name, clip size/frames/fps, and how each part was trained

The project's trained bundle ships in the package (`smrabooth_sprites/assets/smra-sprites`, see
`bundled_model_dir`); `build_sprites_models` makes the same architecture with random weights, which
is what the pretraining script starts from and what the tests use (preset "tiny").
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from smrabooth.errors import SmraboothError
from smrabooth.models.searaft import SEARAFTConfig
from smrabooth.models.tiny import TinyWanConfig

from .world import VOCABULARY

BUNDLE_FILE = "sprites.json"
# what save_bundle writes: the Wan pipeline's folders, DINOv2, SEA-RAFT and sprites.json
BUNDLE_ENTRIES = {BUNDLE_FILE, "model_index.json", "transformer", "transformer_2", "vae", "text_encoder", "tokenizer",
                  "scheduler", "dinov2", "searaft"}
ASSET_DIR = Path(__file__).resolve().parent / "assets" / "smra-sprites"


@dataclass(frozen=True)
class SpritesPreset:
    """Sizes of every model in a bundle, and the clips they are made for."""

    wan: TinyWanConfig
    dinov2: dict  # transformers Dinov2Config kwargs
    searaft: SEARAFTConfig
    size: int = 128  # square clips, pixels
    frames: int = 17  # 4k+1
    fps: float = 15.0

    def to_dict(self) -> dict:
        wan = asdict(self.wan)
        wan.pop("words")
        return {"wan": wan, "dinov2": dict(self.dinov2), "searaft": self.searaft.to_dict(), "size": self.size,
                "frames": self.frames, "fps": self.fps}


def _wan(**kw) -> TinyWanConfig:
    return TinyWanConfig(words=VOCABULARY, **kw)


PRESETS: dict[str, SpritesPreset] = {
    # What the project trains and ships (about 10M parameters, ~20 MB in bf16).
    "small": SpritesPreset(
        wan=_wan(num_layers=8, num_attention_heads=4, attention_head_dim=48, ffn_dim=768, text_dim=128,
                 text_layers=2, vae_base_dim=16, vae_dim_mult=(1, 2, 2, 2), vae_num_res_blocks=1, text_heads=4,
                 flow_shift=3.0),
        dinov2=dict(hidden_size=192, num_hidden_layers=4, num_attention_heads=3, intermediate_size=768,
                    patch_size=16, image_size=128),
        searaft=SEARAFTConfig(pretrain="resnet18", initial_dim=32, block_dims=(32, 48, 64), radius=3, dim=64,
                              num_blocks=1, iters=4, scale=0),
    ),
    # For tests: the same structure at a size that trains a few steps in seconds on a CPU.
    "tiny": SpritesPreset(
        wan=_wan(num_layers=2, num_attention_heads=2, attention_head_dim=16, ffn_dim=64, text_dim=32,
                 text_layers=1, vae_base_dim=8, flow_shift=3.0),
        dinov2=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                    patch_size=16, image_size=128),
        searaft=SEARAFTConfig.tiny(),
        size=128,
        frames=9,
    ),
}


@dataclass
class SpritesModels:
    pipe: object  # diffusers WanPipeline
    dinov2: object  # transformers Dinov2Model
    searaft: object  # smrabooth.models.searaft.SEARAFT
    preset: str = "small"
    info: dict = field(default_factory=dict)  # training notes written to sprites.json


def get_preset(name: str) -> SpritesPreset:
    if name not in PRESETS:
        raise SmraboothError(f"unknown SMRA-Sprites preset {name!r}: choose from {', '.join(PRESETS)}")
    return PRESETS[name]


def build_sprites_models(preset: str = "small", seed: int = 0) -> SpritesModels:
    """Random-weight models of a preset (fp32, CPU, eval mode)."""
    from transformers import Dinov2Config, Dinov2Model

    from smrabooth.models.searaft import SEARAFT
    from smrabooth.models.tiny import build_tiny_wan_pipeline

    p = get_preset(preset)
    pipe = build_tiny_wan_pipeline(TinyWanConfig(**{**asdict(p.wan), "seed": seed}))
    torch.manual_seed(seed + 3)
    dinov2 = Dinov2Model(Dinov2Config(**p.dinov2)).eval()
    torch.manual_seed(seed + 4)
    searaft = SEARAFT(p.searaft).eval()
    return SpritesModels(pipe=pipe, dinov2=dinov2, searaft=searaft, preset=preset)


def parameter_counts(models: SpritesModels) -> dict[str, int]:
    parts = {"transformer": models.pipe.transformer, "vae": models.pipe.vae, "text_encoder": models.pipe.text_encoder,
             "dinov2": models.dinov2, "searaft": models.searaft}
    return {k: sum(p.numel() for p in m.parameters()) for k, m in parts.items()}


def save_bundle(models: SpritesModels, out: str | os.PathLike, dtype: torch.dtype = torch.bfloat16,
                overwrite: bool = False) -> Path:
    """Write the bundle folder atomically (a temporary folder renamed into place)."""
    from smrabooth.models.searaft import save_searaft

    out = Path(out)
    if out.exists() and not overwrite:
        raise SmraboothError(f"{out} already exists; pass overwrite=True (--overwrite) to replace it")
    if out.exists() and not (out / BUNDLE_FILE).is_file():  # replace a bundle, never a folder of other files
        raise SmraboothError(f"{out} is not an SMRA-Sprites bundle (it has no {BUNDLE_FILE}): refusing to replace it; "
                             "choose another bundle folder")
    foreign = sorted(p.name for p in out.iterdir() if p.name not in BUNDLE_ENTRIES) if out.is_dir() else []
    if foreign:  # nor a bundle someone put other files into
        raise SmraboothError(f"{out} holds {foreign[0]}, which is not part of a bundle; replacing the bundle would "
                             f"delete it: move it out of {out}, or choose another bundle folder")
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    pipe = models.pipe
    # Every floating tensor is stored in `dtype` (half the size); the loaders cast back to what they are asked for.
    pipe.save_pretrained(tmp, safe_serialization=True)
    for sub in ("transformer", "text_encoder", "vae"):
        _cast_safetensors(tmp / sub, dtype)
    models.dinov2.save_pretrained(tmp / "dinov2", safe_serialization=True)
    _cast_safetensors(tmp / "dinov2", dtype)
    save_searaft(models.searaft, tmp / "searaft")
    _cast_safetensors(tmp / "searaft", dtype)
    info = {"preset": models.preset, "config": get_preset(models.preset).to_dict(), **models.info}
    (tmp / BUNDLE_FILE).write_text(json.dumps(info, indent=2) + "\n")
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return out


def _cast_safetensors(folder: Path, dtype: torch.dtype) -> None:
    """Store floating tensors in `dtype` (the loaders cast back to what they are asked for)."""
    from safetensors.torch import load_file, save_file

    for path in folder.glob("*.safetensors"):
        tensors = load_file(str(path))
        tensors = {k: v.to(dtype) if v.is_floating_point() else v for k, v in tensors.items()}
        save_file(tensors, str(path), metadata={"format": "pt"})


def check_bundle_dir(path: str | os.PathLike) -> Path:
    from smrabooth.models.wan import check_wan_model_dir

    path = Path(path)
    check_wan_model_dir(path)
    for sub in ("dinov2", "searaft"):
        if not (path / sub).is_dir():
            raise SmraboothError(f"{path} is not an SMRA-Sprites bundle: it has no {sub}/ folder")
    return path


def bundled_model_dir() -> Path:
    """The trained bundle shipped with the package, with a clear error when this install lacks it."""
    if not (ASSET_DIR / "model_index.json").is_file():
        raise SmraboothError(
            f"the bundled SMRA-Sprites model is not in this install ({ASSET_DIR}); train one with "
            "`python scripts/train_sprites.py all --out DIR` and pass --model DIR"
        )
    return check_bundle_dir(ASSET_DIR)


def read_bundle_info(path: str | os.PathLike) -> dict:
    """A bundle's sprites.json ({} when it has none); a damaged one is one line naming it."""
    from smrabooth.readers import read_json

    f = Path(path) / BUNDLE_FILE
    return read_json(f, dict, "an SMRA-Sprites bundle's sprites.json") if f.is_file() else {}


def load_bundle(path: str | os.PathLike | None = None, device: str | None = None,
                dtype: str = "fp32") -> SpritesModels:
    """Load a bundle (default: the shipped one) through the same loaders real models use."""
    from smrabooth.backbones import backbone_for_model
    from smrabooth.models.dinov2 import load_dinov2
    from smrabooth.models.searaft import load_searaft

    path = check_bundle_dir(path) if path is not None else bundled_model_dir()
    device = device or "cpu"
    pipe = backbone_for_model(path).load(path, dtype=dtype, vae_dtype="fp32", device=device)  # any Wan form
    dinov2 = load_dinov2(str(path / "dinov2"), device=device, dtype=torch.float32, local_files_only=True)
    searaft = load_searaft(str(path / "searaft"), device=device).float()
    info = read_bundle_info(path)
    return SpritesModels(pipe=pipe, dinov2=dinov2, searaft=searaft, preset=info.get("preset", "small"), info=info)
