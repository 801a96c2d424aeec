"""ZeroScope, the U-Net text-to-video backbone of SMRABooth's U-Net variant (supplementary section 5).

ZeroScope v2 576w (`cerspense/zeroscope_v2_576w`) is a diffusers `TextToVideoSDPipeline`: a
`UNet3DConditionModel` predicting the noise (epsilon), a Stable Diffusion `AutoencoderKL` applied to
each frame on its own (8x spatial, no temporal compression, 4 latent channels), an OpenCLIP ViT-H
text encoder (1024 wide, 77 tokens) and a DDIM scheduler; 576x320, 24 frames.

`--model` is a hub id or a local folder (`save_pretrained` / `huggingface-cli download`); a local
folder never touches the network. backbones/ tells a ZeroScope folder from a Wan one by its
model_index.json, so every command takes either without a flag (`--backbone` overrides it).
`build_tiny_zeroscope_pipeline` builds the same classes with tiny random weights for the tests.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import SmraboothError
from .wan import _looks_like_hub_id, default_device, parse_dtype

ZEROSCOPE_576W = "cerspense/zeroscope_v2_576w"
PIPELINE_CLASS = "TextToVideoSDPipeline"

# The UNet3DConditionModel of zeroscope_v2_576w (its unet/config.json; diffusers' defaults). Note that
# UNet3DConditionModel reads `attention_head_dim` as the NUMBER of heads (diffusers issue 2011).
ZEROSCOPE_UNET_CONFIG = dict(
    sample_size=32, in_channels=4, out_channels=4,
    down_block_types=("CrossAttnDownBlock3D", "CrossAttnDownBlock3D", "CrossAttnDownBlock3D", "DownBlock3D"),
    up_block_types=("UpBlock3D", "CrossAttnUpBlock3D", "CrossAttnUpBlock3D", "CrossAttnUpBlock3D"),
    block_out_channels=(320, 640, 1280, 1280), layers_per_block=2, downsample_padding=1, mid_block_scale_factor=1,
    act_fn="silu", norm_num_groups=32, norm_eps=1e-5, cross_attention_dim=1024, attention_head_dim=64,
)
# Its scheduler (scheduler/scheduler_config.json): DDIM on SD's scaled-linear betas, epsilon prediction.
ZEROSCOPE_SCHEDULER_CONFIG = dict(
    num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
    set_alpha_to_one=False, steps_offset=1, prediction_type="epsilon",
)
ZEROSCOPE_SIZE = dict(frames=24, height=320, width=576)


def check_zeroscope_model_dir(path: str | os.PathLike) -> None:
    """Raise a clear error unless `path` is a diffusers-format TextToVideoSDPipeline folder."""
    path = Path(path)
    hint = f"pass a diffusers-format ZeroScope model, e.g. a folder downloaded from {ZEROSCOPE_576W}"
    index = path / "model_index.json"
    if not index.is_file():
        raise SmraboothError(f"{path} is not a diffusers model: it has no model_index.json ({hint})")
    from ..readers import read_json, short_repr

    cls = read_json(index, dict, "model_index.json").get("_class_name")
    if cls != PIPELINE_CLASS:
        raise SmraboothError(f"{path} holds a {short_repr(cls)}, not a {PIPELINE_CLASS} ({hint})")
    for sub in ("unet", "vae", "text_encoder", "tokenizer", "scheduler"):
        if not (path / sub).is_dir():
            raise SmraboothError(f"{path} is missing its {sub}/ folder: the download is incomplete ({hint})")


def load_zeroscope_pipeline(
    model: str | os.PathLike,
    dtype: str | torch.dtype = "auto",
    vae_dtype: str | torch.dtype = "fp32",
    device: str | None = None,
    local_files_only: bool | None = None,
):
    """Load a `TextToVideoSDPipeline` (ZeroScope) from a folder or hub id, as `load_wan_pipeline` does Wan."""
    from diffusers import AutoencoderKL, TextToVideoSDPipeline

    model = str(model)
    device = device or default_device()
    if dtype == "auto":
        dtype = "bf16" if torch.device(device).type == "cuda" else "fp32"
    dtype, vae_dtype = parse_dtype(dtype), parse_dtype(dtype if vae_dtype == "auto" else vae_dtype)
    if os.path.isdir(model):
        check_zeroscope_model_dir(model)
        local_files_only = True
    elif not _looks_like_hub_id(model):
        raise SmraboothError(f"model {model} is neither a folder nor a hub id like {ZEROSCOPE_576W}")
    if local_files_only is None:
        local_files_only = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")
    try:
        vae = AutoencoderKL.from_pretrained(model, subfolder="vae", torch_dtype=vae_dtype,
                                            local_files_only=local_files_only)
        pipe = TextToVideoSDPipeline.from_pretrained(model, vae=vae, torch_dtype=dtype,
                                                     local_files_only=local_files_only)
    except (OSError, ValueError) as e:
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise SmraboothError(
            f"could not load the ZeroScope model {model}: {first_line}. Offline, download it elsewhere "
            f"(huggingface-cli download {model if _looks_like_hub_id(model) else ZEROSCOPE_576W} --local-dir DIR) "
            f"and pass --model DIR") from None
    except Exception as e:  # noqa: BLE001  (a damaged config.json or weight file: diffusers raises many types)
        first_line = " ".join(str(e).split())[:200] or type(e).__name__
        raise SmraboothError(f"could not load the ZeroScope model {model} ({type(e).__name__}: {first_line}): a "
                             "config or weight file of it is damaged or of another model") from None
    if type(pipe.unet).__name__ != "UNet3DConditionModel":
        raise SmraboothError(f"{model}: its unet is a {type(pipe.unet).__name__}, not a UNet3DConditionModel")
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


@dataclass
class TinyZeroScopeConfig:
    """Sizes of the tiny ZeroScope: the real classes, two U-Net levels, a 4-level (8x) VAE."""

    block_out_channels: tuple[int, ...] = (32, 64)
    heads: int = 4  # UNet3DConditionModel's `attention_head_dim` (a head count, see above)
    text_dim: int = 32
    text_layers: int = 2
    vae_channels: int = 8
    seed: int = 0


def build_tiny_zeroscope_pipeline(config: TinyZeroScopeConfig | None = None):
    """A `TextToVideoSDPipeline` with tiny random components (fp32, CPU) and ZeroScope's scheduler."""
    from diffusers import AutoencoderKL, DDIMScheduler, TextToVideoSDPipeline, UNet3DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from .tiny import build_tiny_tokenizer

    cfg = config or TinyZeroScopeConfig()
    tokenizer = build_tiny_tokenizer()
    tokenizer.model_max_length = 77  # CLIP's context, as the real tokenizer
    torch.manual_seed(cfg.seed)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=cfg.text_dim, intermediate_size=cfg.text_dim * 2,
        num_hidden_layers=cfg.text_layers, num_attention_heads=4, max_position_embeddings=77, pad_token_id=0,
        bos_token_id=1, eos_token_id=1)).eval()
    torch.manual_seed(cfg.seed + 1)
    c = cfg.vae_channels
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(c, c, c, c), layers_per_block=1,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        norm_num_groups=4, scaling_factor=0.18215).eval()
    torch.manual_seed(cfg.seed + 2)
    n = len(cfg.block_out_channels)
    unet = UNet3DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, block_out_channels=cfg.block_out_channels, layers_per_block=1,
        down_block_types=("CrossAttnDownBlock3D",) * (n - 1) + ("DownBlock3D",),
        up_block_types=("UpBlock3D",) + ("CrossAttnUpBlock3D",) * (n - 1),
        cross_attention_dim=cfg.text_dim, attention_head_dim=cfg.heads, norm_num_groups=8).eval()
    scheduler = DDIMScheduler(**ZEROSCOPE_SCHEDULER_CONFIG)
    pipe = TextToVideoSDPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                 scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def build_zeroscope_unet(dtype=torch.float32, device="cpu"):
    """The real ZeroScope v2 576w UNet3DConditionModel with random weights (benchmarks)."""
    from diffusers import UNet3DConditionModel

    return UNet3DConditionModel(**ZEROSCOPE_UNET_CONFIG).to(device, dtype)
