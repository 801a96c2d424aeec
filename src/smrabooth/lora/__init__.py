"""LoRA files, key formats, target layers and (sparse) injection into a Wan transformer."""

from .convert import FORMATS, detect_format
from .files import LoraWeights, base_model_info, check_lora_fits, describe_lora, load_lora, save_lora
from .inject import load_loras_into_transformer, set_lora_scales
from .targets import ALL_LAYER_TYPES, LAYER_TYPES, parse_layer_types

__all__ = [
    "ALL_LAYER_TYPES",
    "FORMATS",
    "LAYER_TYPES",
    "LoraWeights",
    "base_model_info",
    "check_lora_fits",
    "describe_lora",
    "detect_format",
    "load_lora",
    "load_loras_into_transformer",
    "parse_layer_types",
    "save_lora",
    "set_lora_scales",
]
