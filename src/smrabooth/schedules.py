"""Noise schedules: the sampler's sigmas, the training sigma table, and the per-step LoRA scales.

Sigmas follow DiffSynth's Wan schedule, linspace(1, 0, steps + 1)[:-1] shifted by `shift`. Training
draws sigma from the same schedule at `NUM_TRAIN_TIMESTEPS` steps. The subject LoRA's switch point
T_point is a step of a reference schedule (a recipe's own steps and shift, by default the paper's);
another sampler or step count switches at the step of the nearest noise level (docs/method.md, stage 3).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .errors import SmraboothError
from .recipes import NUM_TRAIN_TIMESTEPS, PAPER

_PAPER_SAMPLER = PAPER.sampler


def shifted_linear_sigmas(steps: int, shift: float) -> np.ndarray:
    """DiffSynth's Wan sigmas: linspace(1, 0, steps + 1)[:-1], then shifted (length `steps`)."""
    s = np.linspace(1.0, 0.0, steps + 1)[:-1]
    return shift * s / (1 + (shift - 1) * s)


def training_sigmas(shift: float, num_train_timesteps: int = NUM_TRAIN_TIMESTEPS) -> torch.Tensor:
    """The sampler's shifted sigma schedule at training resolution (DiffSynth's training timesteps)."""
    return torch.from_numpy(shifted_linear_sigmas(num_train_timesteps, shift)).float()


TIMESTEP_WEIGHTS = ("none", "bell")


def timestep_weights(sigmas: torch.Tensor, kind: str = "none") -> torch.Tensor:
    """The flow loss's weight at each entry of a training sigma table (docs/method.md, training timesteps).

    none: 1 everywhere. bell (the authors' code): g(t) = exp(-2 ((t - 500) / 1000)^2) at t = 1000 sigma,
    w = (g - min g) / mean(g - min g) over the table, so w is 0 at the table's end and averages 1."""
    if kind == "none":
        return torch.ones_like(sigmas)
    if kind != "bell":
        raise SmraboothError(f"timestep weight {kind!r}: choose {', '.join(TIMESTEP_WEIGHTS)}")
    t = sigmas.double() * NUM_TRAIN_TIMESTEPS
    g = torch.exp(-2 * ((t - NUM_TRAIN_TIMESTEPS / 2) / NUM_TRAIN_TIMESTEPS) ** 2)
    g = g - g.min()
    return (g / g.mean()).to(sigmas.dtype)


TIMESTEP_ROUNDINGS = ("none", "bf16")


def training_table(shift: float, weight: str = "none", rounding: str = "none") -> tuple[torch.Tensor, torch.Tensor]:
    """The training table the trainers draw from, index uniform: (sigmas, flow-loss weights).

    rounding bf16 (the authors' code): the drawn timestep t = 1000 sigma is cast to bf16 before use (for
    the noise level, the model's input and the weight alike), i.e. each entry becomes the entry nearest to
    bf16(t) (t in (512, 1000] snaps to a multiple of 4, (256, 512] to a multiple of 2). The index stays
    uniform, so entries that round together are drawn together more often (t = 1000, weight 0, gets 3 of
    1000 draws instead of 1)."""
    sigmas = training_sigmas(shift)
    weights = timestep_weights(sigmas, weight)
    if rounding == "none":
        return sigmas, weights
    if rounding != "bf16":
        raise SmraboothError(f"timestep rounding {rounding!r}: choose {', '.join(TIMESTEP_ROUNDINGS)}")
    t = sigmas * NUM_TRAIN_TIMESTEPS
    rounded = t.to(torch.bfloat16).float()
    nearest = (t[None, :] - rounded[:, None]).abs().argmin(dim=1)  # the first of equals, as torch.argmin
    return sigmas[nearest], weights[nearest]


def t_point_sigma(t_point: int = _PAPER_SAMPLER.t_point, steps: int = _PAPER_SAMPLER.steps,
                  shift: float = _PAPER_SAMPLER.shift) -> float:
    """The noise level of step `t_point` of the reference schedule (`steps` Euler steps with `shift`);
    by default the paper's switch point, step 15 of 50 at shift 5."""
    if not 0 <= t_point < steps:
        raise SmraboothError(f"T_point {t_point} is outside the reference schedule's steps 0..{steps - 1}")
    return float(shifted_linear_sigmas(steps, shift)[t_point])


def t_point_for_sigmas(step_sigmas, t_point: int = _PAPER_SAMPLER.t_point, steps: int = _PAPER_SAMPLER.steps,
                       shift: float = _PAPER_SAMPLER.shift) -> int:
    """The step of a run (noise level `step_sigmas[i]` at step i) closest in noise level to step `t_point`
    of the reference schedule (`steps`, `shift`): what a recipe's T_point means for another sampler."""
    sigmas = np.asarray([float(s) for s in step_sigmas])
    return int(np.argmin(np.abs(sigmas - t_point_sigma(t_point, steps, shift))))


def draw_share(max_sigma: float, shift: float, rounding: str = "none") -> float:
    """The share of training draws (index uniform over `training_table`) whose sigma is at most `max_sigma`:
    how often MoRA runs under --mora-max-sigma (shift 5: 47 of 1000 entries are at or below 0.2)."""
    sigmas, _ = training_table(shift, "none", rounding)
    return float((sigmas <= max_sigma).float().mean())


@dataclass(frozen=True)
class InjectionSchedule:
    """Per-step LoRA scales: subject `subject_early` before `t_point`, `subject_late` from it on."""

    t_point: int = _PAPER_SAMPLER.t_point
    subject_early: float = _PAPER_SAMPLER.subject_scale_early
    subject_late: float = _PAPER_SAMPLER.subject_scale
    motion: float = _PAPER_SAMPLER.motion_scale

    @classmethod
    def constant(cls, subject: float = 1.0, motion: float = 1.0) -> InjectionSchedule:
        return cls(t_point=0, subject_early=subject, subject_late=subject, motion=motion)

    def scales_at(self, step: int) -> dict[str, float]:
        subject = self.subject_early if step < self.t_point else self.subject_late
        return {"subject": subject, "motion": self.motion}


__all__ = ["TIMESTEP_WEIGHTS", "InjectionSchedule", "draw_share", "shifted_linear_sigmas", "t_point_for_sigmas", "t_point_sigma",
           "timestep_weights", "training_sigmas"]
