"""Merged LoRA execution: the LoRAs are added into the base weights instead of running beside them.

For every linear layer a LoRA acts on,

    W = W0 + sum_i  s_i * (alpha_i / r_i) * B_i @ A_i

computed in fp32 from the saved base weight W0 and written once in the weight's dtype. A step then costs
exactly what a step without LoRAs costs (no extra matmuls, no peft wrappers, nothing for torch.compile
to trace around). When the scales change (the subject LoRA's switch at T_point), only the layers whose
LoRAs changed scale are recomputed, again from W0, so the weights after a switch are bit for bit those
a fresh merge at the new scales gives. This is how the authors' inference script runs (merge, then at
step 15 restore the base weights and merge again at the new scales).

`restore()` copies W0 back: the transformer is left exactly as it was found. The base weights are kept
on the CPU (pinned when the model is on a GPU), so merging costs no GPU memory beyond the model's own.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..errors import SmraboothError
from .files import LoraWeights
from .inject import checked_layers


@dataclass
class _Delta:
    lora: str  # which LoRA ("subject", "motion")
    down: torch.Tensor  # A (r, in), on the weight's device, fp32
    up: torch.Tensor  # B (out, r), fp32
    factor: float  # alpha / r


@dataclass
class MergedLoras:
    """LoRAs merged into `transformer`; `set_scales` re-merges, `restore` puts the base weights back."""

    transformer: torch.nn.Module
    deltas: dict[str, list[_Delta]]  # module path -> the LoRAs acting on it
    base: dict[str, torch.Tensor]  # module path -> W0 (CPU copy)
    scales: dict[str, float] = field(default_factory=dict)

    def set_scales(self, scales: dict[str, float]) -> None:
        """Merge at `scales` (LoRA name -> scale); layers whose LoRAs keep their scale are not touched."""
        changed = {name for name in scales if self.scales.get(name) != scales[name]}
        if not changed:
            return
        with torch.no_grad():
            for path, deltas in self.deltas.items():
                if not any(d.lora in changed for d in deltas):
                    continue
                weight = self.transformer.get_submodule(path).weight
                merged = self.base[path].to(weight.device, torch.float32, non_blocking=True, copy=True)
                for d in deltas:  # (an expert moved between devices since `merge_loras`: its deltas follow it)
                    merged.addmm_(d.up.to(merged.device), d.down.to(merged.device),
                                  alpha=scales.get(d.lora, 0.0) * d.factor)
                weight.copy_(merged)
        self.scales = dict(scales)

    def restore(self) -> None:
        """The base weights back in place, exactly."""
        with torch.no_grad():
            for path, w0 in self.base.items():
                self.transformer.get_submodule(path).weight.copy_(w0)
        self.scales = {}


def merge_loras(transformer, loras: dict[str, tuple[LoraWeights, tuple[str, ...] | None]],
                paths: dict[str, str] | None = None) -> MergedLoras:
    """Prepare `loras` (name -> (weights, layer types or None for all)) for merging into `transformer`.

    Nothing is merged until `set_scales`; the caller must `restore()` (in a `finally`)."""
    paths = paths or {}
    deltas: dict[str, list[_Delta]] = {}
    for name, (weights, layer_types) in loras.items():
        weights = checked_layers(transformer, name, weights, layer_types, paths.get(name))
        for module in weights.modules:
            try:
                layer = transformer.get_submodule(module)
            except AttributeError:
                raise SmraboothError(f"the {name} LoRA {paths.get(name, '')} names {module}, which the model "
                                     f"does not have") from None
            device = layer.weight.device
            down = weights.tensors[f"{module}.lora_A.weight"].to(device, torch.float32)
            up = weights.tensors[f"{module}.lora_B.weight"].to(device, torch.float32)
            deltas.setdefault(module, []).append(_Delta(name, down, up, weights.alpha / weights.rank))
    pin = torch.cuda.is_available() and any(p.is_cuda for p in transformer.parameters())
    base = {}
    for module in deltas:
        w = transformer.get_submodule(module).weight.detach().to("cpu", copy=True)
        base[module] = w.pin_memory() if pin else w
    return MergedLoras(transformer, deltas, base)


__all__ = ["MergedLoras", "merge_loras"]
