"""The denoisers a Wan run trains a LoRA in, and which of them a training step runs.

One denoiser (Wan2.1, Wan2.2 TI2V-5B): its LoRA is trained on every timestep of the training table. Wan2.2
A14B: `--expert high|low|both` names the experts; each is trained on the timesteps it denoises at generation
(the stock pipeline's boundary splits the table: t = 1000 sigma >= boundary_ratio x 1000 is the high-noise
expert's), and a step runs the expert of the sigma it drew. An expert that is not trained waits on the CPU
(unless validation videos need it), and goes back with the pipeline (train.borrow).

`module` is what checkpoints save and load the LoRA of: the one denoiser itself, or for two experts an
`ExpertSet` holding both, whose LoRA state dict keys start with the expert's name ('low.blocks.0...').
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ..backbones.base import MAIN
from ..errors import InternalError


class ExpertSet(nn.Module):
    """Several experts as one module for checkpoints: peft's state-dict helpers see every expert's adapter
    under the expert's name. Every expert carries the same adapters, so the first one's peft config serves."""

    def __init__(self, experts: dict[str, nn.Module]):
        super().__init__()
        for name, module in experts.items():
            self.add_module(name, module)

    @property
    def peft_config(self):
        return next(iter(self.children())).peft_config


@dataclass
class TrainedDenoisers:
    backbone: object
    pipe: object
    experts: dict[str, nn.Module] = field(default_factory=dict)  # the trained ones, high before low

    @classmethod
    def select(cls, backbone, pipe, expert: str | None) -> TrainedDenoisers:
        names = backbone.check_expert(expert)
        denoisers = backbone.denoisers(pipe)
        return cls(backbone, pipe, {name: denoisers[name] for name in names})

    @property
    def module(self) -> nn.Module:
        if len(self.experts) == 1:
            return next(iter(self.experts.values()))
        return ExpertSet(self.experts)

    @property
    def first(self) -> nn.Module:
        return next(iter(self.experts.values()))

    def idle(self) -> list[nn.Module]:
        """The pipeline's denoisers this run does not train."""
        return [m for name, m in self.backbone.denoisers(self.pipe).items() if name not in self.experts]

    def park_idle(self) -> None:
        """Idle experts wait on the CPU, frozen (train.borrow puts them back)."""
        for module in self.idle():
            module.requires_grad_(False).to("cpu")

    def sigma_table(self, sigmas: torch.Tensor, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The entries of the training table (sigmas and their loss weights) the trained experts denoise."""
        if list(self.experts) == [MAIN]:
            return sigmas, weights
        keep = torch.zeros_like(sigmas, dtype=torch.bool)
        for name in self.experts:
            keep |= self.backbone.expert_sigmas(self.pipe, name, sigmas)
        return sigmas[keep], weights[keep]

    def at(self, sigma: torch.Tensor) -> nn.Module:
        """The trained expert that denoises noise level `sigma` (1,)."""
        if len(self.experts) == 1:
            return self.first
        for name, module in self.experts.items():
            if bool(self.backbone.expert_sigmas(self.pipe, name, sigma.detach().cpu())[0]):
                return module
        raise InternalError(f"sigma {float(sigma)} is outside every trained expert's range")

    def lora_seeds(self, seed: int) -> dict[str, int]:
        """Each expert's LoRA initialisation seed: `seed` for the first (a one-denoiser run's), then seed + 2."""
        return {name: seed + 2 * i for i, name in enumerate(self.experts)}


__all__ = ["ExpertSet", "TrainedDenoisers"]
