"""Putting subject and motion LoRAs into a Wan transformer, and changing their scales per step.

Location (which layers each LoRA acts on) is decided when the LoRAs are loaded: for sparse
injection only the chosen layer types of each file are loaded, so the others cost nothing.
Timing (docs/method.md stage 3) is an `InjectionSchedule`: the subject LoRA runs at a low scale before
step `t_point` and at full scale from then on; the motion LoRA keeps one scale throughout.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from ..errors import SmraboothError
from .files import LoraWeights, check_finite, check_lora_fits, check_lora_pairs
from .targets import module_suffixes

# The paper's sampler: 50 flow-matching Euler steps with shift 5; subject scale switches at step 15.
PAPER_STEPS = 50
PAPER_T_POINT = 15
PAPER_SHIFT = 5.0


def shifted_linear_sigmas(steps: int, shift: float) -> np.ndarray:
    """DiffSynth's Wan sigmas: linspace(1, 0, steps + 1)[:-1], then shifted (length `steps`)."""
    s = np.linspace(1.0, 0.0, steps + 1)[:-1]
    return shift * s / (1 + (shift - 1) * s)


def paper_t_point_sigma(paper_step: int = PAPER_T_POINT) -> float:
    """The noise level of step `paper_step` of the paper's sampler (50 steps, shift 5); by default its
    switch point, step 15."""
    if not 0 <= paper_step < PAPER_STEPS:
        raise SmraboothError(f"T_point {paper_step} is outside the paper's 0..{PAPER_STEPS - 1}")
    return float(shifted_linear_sigmas(PAPER_STEPS, PAPER_SHIFT)[paper_step])


def t_point_for_sigmas(step_sigmas, paper_step: int = PAPER_T_POINT) -> int:
    """The step of a run whose noise level is closest to the paper's step `paper_step` (its switch point
    by default): what the paper's T_point means for another sampler or step count."""
    sigmas = np.asarray([float(s) for s in step_sigmas])
    return int(np.argmin(np.abs(sigmas - paper_t_point_sigma(paper_step))))


@dataclass(frozen=True)
class InjectionSchedule:
    """Per-step LoRA scales: subject `subject_early` before `t_point`, `subject_late` from it on."""

    t_point: int = PAPER_T_POINT
    subject_early: float = 0.5
    subject_late: float = 1.0
    motion: float = 1.0

    @classmethod
    def constant(cls, subject: float = 1.0, motion: float = 1.0) -> "InjectionSchedule":
        return cls(t_point=0, subject_early=subject, subject_late=subject, motion=motion)

    def scales_at(self, step: int) -> dict[str, float]:
        subject = self.subject_early if step < self.t_point else self.subject_late
        return {"subject": subject, "motion": self.motion}


def load_loras_into_transformer(
    transformer, loras: dict[str, tuple[LoraWeights, tuple[str, ...] | None]], paths: dict[str, str] | None = None
) -> list:
    """Load each named LoRA as a peft adapter, restricted to its layer types (None: all it has).

    Returns the LoRA layers of the transformer, for `set_lora_scales`.
    """
    paths = paths or {}
    names = []
    for name, (weights, layer_types) in loras.items():
        what = paths.get(name) or f"the {name} LoRA"
        check_lora_pairs(weights.tensors, what)
        check_finite(weights.tensors, what)
        check_lora_fits(weights, transformer.config, what)
        if layer_types is not None:
            weights = weights.filtered(layer_types)
        if not weights.tensors:
            raise SmraboothError(
                f"the {name} LoRA {paths.get(name, '')} has none of the layer types {', '.join(layer_types)}: "
                f"it has {', '.join(loras[name][0].layer_types)}; change the layer set or use --injection dense"
            )
        metadata = {
            "transformer.r": weights.rank,
            "transformer.lora_alpha": weights.alpha,
            "transformer.target_modules": sorted(set(module_suffixes(weights.layer_types))),
        }
        state_dict = {f"transformer.{k}": v for k, v in weights.tensors.items()}
        with warnings.catch_warnings():  # peft warns whenever a second adapter is added, which is the point here
            warnings.filterwarnings("ignore", message="Already found a `peft_config`")
            transformer.load_lora_adapter(state_dict, prefix="transformer", adapter_name=name, metadata=metadata)
        names.append(name)
    if names:
        transformer.set_adapters(names, [1.0] * len(names))
    return lora_layers(transformer)


def lora_layers(transformer) -> list:
    from peft.tuners.lora import LoraLayer

    return [m for m in transformer.modules() if isinstance(m, LoraLayer)]


def set_lora_scales(layers, scales: dict[str, float]) -> None:
    """Set each adapter's scale (a multiplier of alpha/rank) in every layer that has it."""
    for layer in layers:
        for name, scale in scales.items():
            layer.set_scale(name, scale)
