"""Loading a diffusers-format Wan text-to-video model (Wan2.1 1.3B/14B, Wan2.2 A14B/TI2V-5B), online or offline.

`--model` is a hub id (`Wan-AI/Wan2.1-T2V-1.3B-Diffusers`) or a local folder written by
`save_pretrained` / `huggingface-cli download`. A local folder never touches the network. The
transformer and text encoder load in `dtype` (bf16 by default; diffusers keeps the modules it
lists in `_keep_in_fp32_modules` in fp32), the VAE in `vae_dtype` (fp32 by default).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ..errors import SmraboothError

DTYPES = {"fp32": torch.float32, "float32": torch.float32, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
          "fp16": torch.float16, "float16": torch.float16}
WAN_1_3B = "Wan-AI/Wan2.1-T2V-1.3B-Diffusers"
WAN_14B = "Wan-AI/Wan2.1-T2V-14B-Diffusers"


def parse_dtype(name: str | torch.dtype) -> torch.dtype:
    if isinstance(name, torch.dtype):
        return name
    if name not in DTYPES:
        raise SmraboothError(f"unknown dtype {name!r}: choose from fp32, bf16, fp16")
    return DTYPES[name]


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def check_wan_model_dir(path: str | os.PathLike) -> None:
    """Raise a clear error unless `path` is a diffusers-format Wan text-to-video model folder (a WanPipeline,
    with every component its model_index.json lists: Wan2.2 A14B's transformer_2/ too)."""
    path = Path(path)
    index = path / "model_index.json"
    hint = f"pass a diffusers-format Wan T2V model, e.g. a folder downloaded from {WAN_1_3B}"
    if not index.is_file():
        raise SmraboothError(f"{path} is not a Wan diffusers model: it has no model_index.json ({hint})")
    from ..readers import read_json, short_repr

    data = read_json(index, dict, "model_index.json")
    cls = data.get("_class_name")
    if cls != "WanPipeline":
        raise SmraboothError(f"{path} holds a {short_repr(cls)}, not a WanPipeline ({hint})")
    from ..backbones.base import listed

    extra = ("transformer_2",) if listed(data, "transformer_2") else ()
    for sub in ("transformer", "vae", "text_encoder", "tokenizer", "scheduler", *extra):
        if not (path / sub).is_dir():
            raise SmraboothError(f"{path} is missing its {sub}/ folder: the download is incomplete ({hint})")


def _looks_like_hub_id(model: str) -> bool:
    parts = model.split("/")
    return len(parts) == 2 and all(parts) and not model.startswith((".", "/", "~"))


def check_model_source(model, flag: str = "--model", folder_check=check_wan_model_dir) -> str:
    """A local model folder (checked by `folder_check`) or a hub id; a path that is neither is reported as
    a missing folder, not as a bad hub id. Returns 'folder' or 'hub'."""
    model = str(model)
    if os.path.isdir(model):
        if folder_check is not None:
            folder_check(model)
        return "folder"
    if os.path.exists(model):
        raise SmraboothError(f"{flag} {model}: is a file; pass the model's folder or a hub id")
    if not _looks_like_hub_id(model) or os.path.isdir(model.split("/")[0]):
        raise SmraboothError(f"{flag} {model}: no such folder (a hub id looks like owner/name, e.g. {WAN_1_3B})")
    return "hub"


def load_wan_pipeline(
    model: str | os.PathLike,
    dtype: str | torch.dtype = "auto",
    vae_dtype: str | torch.dtype = "fp32",
    device: str | None = None,
    local_files_only: bool | None = None,
    text_encoder_device: str | None = None,
    folder_check=check_wan_model_dir,
):
    """Load a `diffusers.WanPipeline` from a local folder or a hub id, with clear errors; `folder_check` checks a
    folder first (the backbone's).

    `text_encoder_device` ("cpu") keeps the text encoder, and Wan2.2 A14B's low-noise expert, off the GPU
    (generation with offload moves each there only while it runs).

    dtype "auto" is bf16 on a GPU and fp32 on the CPU, where bf16 matmuls run several times slower; vae_dtype
    "auto" is the transformer's.
    """
    from diffusers import AutoencoderKLWan, WanPipeline

    model = str(model)
    device = device or default_device()
    if dtype == "auto":
        dtype = "bf16" if torch.device(device).type == "cuda" else "fp32"
    dtype, vae_dtype = parse_dtype(dtype), parse_dtype(dtype if vae_dtype == "auto" else vae_dtype)
    if check_model_source(model, folder_check=folder_check) == "folder":
        local_files_only = True
    if local_files_only is None:
        from ..hub import check_hub_reachable, is_offline

        check_hub_reachable([model])
        local_files_only = is_offline()
    try:
        vae = AutoencoderKLWan.from_pretrained(
            model, subfolder="vae", torch_dtype=vae_dtype, local_files_only=local_files_only
        )
        pipe = WanPipeline.from_pretrained(model, vae=vae, torch_dtype=dtype, local_files_only=local_files_only)
    except (OSError, ValueError) as e:
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise SmraboothError(
            f"could not load the Wan model {model}: {first_line}. "
            f"{'It is not in the local cache (offline). ' if local_files_only and not os.path.isdir(model) else ''}"
            f"Offline, download it elsewhere "
            f"(huggingface-cli download {model if _looks_like_hub_id(model) else WAN_1_3B} --local-dir DIR) "
            f"and pass --model DIR"
        ) from None
    except Exception as e:  # noqa: BLE001  (a damaged config.json or weight file: diffusers raises many types)
        first_line = " ".join(str(e).split())[:200] or type(e).__name__
        raise SmraboothError(f"could not load the Wan model {model} ({type(e).__name__}: {first_line}): a config or "
                             "weight file of it is damaged or of another model; download it again") from None
    for name in ("transformer", "transformer_2"):
        module = getattr(pipe, name, None)
        if module is not None and type(module).__name__ != "WanTransformer3DModel":
            raise SmraboothError(f"{model}: its {name} is a {type(module).__name__}, not a WanTransformer3DModel")
    pipe.set_progress_bar_config(disable=True)
    if text_encoder_device is None:
        return pipe.to(device)
    pipe.transformer.to(device)
    if getattr(pipe, "transformer_2", None) is not None:  # Wan2.2 A14B's low-noise expert, used second
        pipe.transformer_2.to(text_encoder_device)
    pipe.vae.to(device)
    pipe.text_encoder.to(text_encoder_device)
    return pipe
