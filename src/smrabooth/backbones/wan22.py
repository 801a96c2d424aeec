"""Wan2.2 text-to-video, both forms diffusers' `WanPipeline` runs (the machinery is wan21.py's, which follows
the pipeline's configuration):

A14B (`Wan-AI/Wan2.2-T2V-A14B-Diffusers`)
    Two experts of Wan2.1-14B's shape (40 blocks, width 5120, 40 heads, FFN 13824): `transformer` denoises the
    high-noise timesteps t >= boundary_ratio x 1000 (0.875 for T2V), `transformer_2` the rest. Wan2.1's VAE.
    A LoRA lives in one expert: a trainer trains the experts `--expert` names (high, low or both), each on
    the training timesteps of its own side of the boundary, and writes one file per expert (stock diffusers
    loads the low-noise one with `load_lora_weights(file, load_into_transformer_2=True)`).
TI2V-5B (`Wan-AI/Wan2.2-TI2V-5B-Diffusers`)
    One transformer (30 blocks, width 3072, 24 heads, FFN 14336) on the Wan2.2 VAE: 48 latent channels,
    16x spatial and 4x temporal compression, pixels patchified 2x2 before its residual encoder;
    `expand_timesteps` gives the transformer one timestep per token. Frame sizes are multiples of 32.
"""

from __future__ import annotations

from ..errors import SmraboothError
from .base import EXPERTS
from .wan21 import Wan21

EXPERT_CHOICES = ("high", "low", "both")


class Wan22A14B(Wan21):
    name = "wan2.2-a14b"
    title = "Wan2.2 A14B"
    example = "Wan-AI/Wan2.2-T2V-A14B-Diffusers"
    two_experts = True

    def matches(self, index: dict) -> bool:
        from .base import listed

        return (index.get("_class_name") == self.pipeline_class and listed(index, "transformer_2")
                and index.get("boundary_ratio") is not None)

    def matches_hub_id(self, model: str) -> bool:
        return "wan2.2" in model.lower() and "a14b" in model.lower()

    def build_tiny(self, seed: int = 0):
        from ..models.tiny import TinyWanConfig, build_tiny_wan22_pipeline

        return build_tiny_wan22_pipeline("a14b", TinyWanConfig(seed=seed))

    def experts(self, pipe=None) -> tuple[str, ...]:
        return EXPERTS

    def check_expert(self, expert: str | None, flag: str = "--expert") -> tuple[str, ...]:
        if expert is None or expert == "both":
            return EXPERTS
        if expert not in EXPERT_CHOICES:
            raise SmraboothError(f"{flag} {expert!r}: choose from {', '.join(EXPERT_CHOICES)}")
        return (expert,)

    def final_names(self, kind: str, cfg) -> tuple[str, ...]:
        return tuple(expert_file_name(f"{kind}_lora.safetensors", e) for e in self.check_expert(cfg.expert))


class Wan22TI2V(Wan21):
    name = "wan2.2-ti2v"
    title = "Wan2.2 TI2V-5B"
    example = "Wan-AI/Wan2.2-TI2V-5B-Diffusers"
    size_multiple = 32  # the Wan2.2 VAE's 16x times the 2x2 patch

    def matches(self, index: dict) -> bool:
        from .base import listed

        return (index.get("_class_name") == self.pipeline_class and not listed(index, "transformer_2")
                and bool(index.get("expand_timesteps")))

    def matches_hub_id(self, model: str) -> bool:
        return "wan2.2" in model.lower() and "5b" in model.lower()

    def build_tiny(self, seed: int = 0):
        from ..models.tiny import TinyWanConfig, build_tiny_wan22_pipeline

        return build_tiny_wan22_pipeline("ti2v", TinyWanConfig(seed=seed))


def expert_file_name(name: str, expert: str) -> str:
    """subject_lora.safetensors -> subject_lora_high.safetensors: one file per expert (the `_high`/`_low` names
    DiffSynth-Studio's and ComfyUI's Wan2.2 LoRAs use)."""
    stem, dot, suffix = name.rpartition(".")
    return f"{stem}_{expert}{dot}{suffix}"


WAN22_A14B = Wan22A14B()
WAN22_TI2V = Wan22TI2V()

__all__ = ["EXPERT_CHOICES", "WAN22_A14B", "WAN22_TI2V", "Wan22A14B", "Wan22TI2V", "expert_file_name"]
