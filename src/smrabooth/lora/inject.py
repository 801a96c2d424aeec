"""Putting subject and motion LoRAs into a Wan transformer, and changing their scales per step.

Location (which layers each LoRA acts on) is decided when the LoRAs are loaded: for sparse
injection only the chosen layer types of each file are loaded, so the others cost nothing.
Timing (docs/method.md stage 3) is a `schedules.InjectionSchedule`, applied each step with
`set_lora_scales`.
"""

from __future__ import annotations

import warnings

from ..errors import SmraboothError
from .files import LoraWeights, check_finite, check_lora_fits, check_lora_pairs
from .targets import module_suffixes


def checked_layers(transformer, name: str, weights: LoraWeights, layer_types, path: str | None = None) -> LoraWeights:
    """The LoRA `name` restricted to `layer_types` (None: all it has), after checking its A/B pairs, its values
    and its fit to `transformer`: what either way of running LoRAs (adapters, merged weights) acts on."""
    what = path or f"the {name} LoRA"
    check_lora_pairs(weights.tensors, what)
    check_finite(weights.tensors, what)
    check_lora_fits(weights, transformer.config, what)
    selected = weights.filtered(layer_types) if layer_types is not None else weights
    if not selected.tensors:
        raise SmraboothError(
            f"the {name} LoRA {path or ''} has none of the layer types {', '.join(layer_types)}: "
            f"it has {', '.join(weights.layer_types)}; change the layer set or use --injection dense"
        )
    return selected


def load_loras_into_transformer(
    transformer, loras: dict[str, tuple[LoraWeights, tuple[str, ...] | None]], paths: dict[str, str] | None = None
) -> list:
    """Load each named LoRA as a peft adapter, restricted to its layer types (None: all it has).

    Returns the LoRA layers of the transformer, for `set_lora_scales`.
    """
    paths = paths or {}
    names = []
    for name, (weights, layer_types) in loras.items():
        weights = checked_layers(transformer, name, weights, layer_types, paths.get(name))
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


class PeftState:
    """What peft adapters change in a model (a Wan transformer, a ZeroScope U-Net), to put back: the adapters
    (added ones deleted, the ones that were active active again), the peft config, the module tree (the layers
    peft wrapped for an added adapter are the plain layers again) and the parameters' requires_grad (peft
    freezes the base). Models without diffusers' adapter methods (UNet3DConditionModel) are handled through
    peft's layers directly."""

    def __init__(self, transformer):
        self.transformer = transformer
        self.had_config = hasattr(transformer, "peft_config")
        self.adapters = list(getattr(transformer, "peft_config", None) or {})
        self.active = list(transformer.active_adapters()) if self.adapters and _diffusers_peft(transformer) else []
        self.modules = dict(transformer.named_modules())
        self.requires_grad = [(p, p.requires_grad) for p in transformer.parameters()]

    def restore(self) -> None:
        t = self.transformer
        added = [a for a in (getattr(t, "peft_config", None) or {}) if a not in self.adapters]
        if added and _diffusers_peft(t):
            # out of every LoRA layer, also those that were there before and are put back below (deleting a
            # transformer's last adapter leaves its empty LoRA layers, and a new adapter goes into those)
            t.delete_adapters(added)
            if self.active:
                t.set_adapters(self.active)
        elif added:
            from peft.tuners.tuners_utils import BaseTunerLayer

            for layer in t.modules():
                if isinstance(layer, BaseTunerLayer):
                    for name in added:
                        if name in getattr(layer, "lora_A", {}):
                            layer.delete_adapter(name)
            for name in added:
                t.peft_config.pop(name, None)
        if not self.had_config and hasattr(t, "peft_config"):
            if _diffusers_peft(t):
                t.unload_lora()  # the LoRA layers and the peft config, neither of which was there
            else:
                del t.peft_config
        for name, module in self.modules.items():  # a layer peft wrapped for an added adapter: the layer again
            parent, _, child = name.rpartition(".")
            if name and getattr(t.get_submodule(parent), child, None) is not module:
                setattr(t.get_submodule(parent), child, module)
        for p, flag in self.requires_grad:
            p.requires_grad_(flag)


def _diffusers_peft(model) -> bool:
    """Whether the model has diffusers' adapter methods (PeftAdapterMixin: Wan's transformer, not the U-Net)."""
    return hasattr(model, "delete_adapters") and hasattr(model, "active_adapters")
