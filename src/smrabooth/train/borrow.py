"""A trainer borrows the pipeline (and the frozen encoders) it is given, and returns them as it found them.

Training changes the models it is lent: the text encoder and the VAE go to the CPU to free GPU memory,
parameters are frozen, the transformer gets a peft adapter, gradient checkpointing, compiled blocks
and train mode. `borrowed` records what those changes touch and puts it back on exit, normally or on
an exception, so a pipeline can train a LoRA and then generate as if it had never trained.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn

from ..lora.inject import PeftState

# the pipeline's models a trainer may touch, of every backbone (backbones.base.Backbone.components); the
# denoisers among them may get adapters
_COMPONENTS = ("text_encoder", "vae", "transformer", "transformer_2", "unet")
_DENOISERS = ("transformer", "transformer_2", "unet")


def _first_device(module: nn.Module):
    return next((p.device for p in module.parameters()), None)


class _ModuleState:
    """Device, train/eval flags, requires_grad flags and compiled forwards of one module tree."""

    def __init__(self, module: nn.Module):
        self.module = module
        self.device = _first_device(module)
        self.training = [(m, m.training) for m in module.modules()]
        self.requires_grad = [(p, p.requires_grad) for p in module.parameters()]
        self.compiled = [(m, getattr(m, "_compiled_call_impl", None)) for m in module.modules()]

    def restore(self) -> None:
        for m, flag in self.training:
            m.training = flag
        for p, flag in self.requires_grad:
            p.requires_grad_(flag)
        for m, impl in self.compiled:  # nn.Module.compile (diffusers' compile_repeated_blocks) sets this
            m._compiled_call_impl = impl
        if self.device is not None and _first_device(self.module) != self.device:
            self.module.to(self.device)


class _AdapterState:
    """The transformer's peft adapters and module tree (lora.inject.PeftState) and its gradient checkpointing."""

    def __init__(self, transformer):
        self.transformer = transformer
        self.peft = PeftState(transformer)
        self.checkpointing = getattr(transformer, "is_gradient_checkpointing", False)

    def restore(self) -> None:
        self.peft.restore()
        t = self.transformer
        if getattr(t, "is_gradient_checkpointing", False) and not self.checkpointing:
            t.disable_gradient_checkpointing()


@contextmanager
def borrowed(pipe, *models: nn.Module | None):
    """Within the block, `pipe` (its text encoder, VAE and denoisers: Wan's transformer(s) or ZeroScope's U-Net)
    and `models` (None ignored) may be changed as training needs; on exit each is as it was: the same component
    objects in the pipeline, on the same devices, with the same train/eval and requires_grad flags, no added
    adapters, no gradient checkpointing or compiled blocks that were not there before."""
    components = {name: getattr(pipe, name) for name in _COMPONENTS if hasattr(pipe, name)}
    states = [_ModuleState(m) for m in (*components.values(), *models) if isinstance(m, nn.Module)]
    adapters = [_AdapterState(components[n]) for n in _DENOISERS if isinstance(components.get(n), nn.Module)]
    try:
        yield pipe
    finally:
        for name, component in components.items():
            setattr(pipe, name, component)
        for adapter in adapters:
            adapter.restore()
        for state in states:
            state.restore()


@contextmanager
def cast_borrowed(module: nn.Module | None, dtype: torch.dtype | None):
    """Within the block, `module`'s floating parameters and buffers in `dtype` (None: as they are); on exit their
    exact values back: kept on the CPU meanwhile, as casting down and up again would round them."""
    named = [] if module is None or dtype is None else [
        (owner, kind, name, t) for owner in module.modules()
        for kind, table in (("parameter", owner._parameters), ("buffer", owner._buffers))
        for name, t in table.items() if t is not None and t.is_floating_point() and t.dtype != dtype]
    saved = [(owner, kind, name, t.detach().to("cpu", copy=True)) for owner, kind, name, t in named]
    for owner, kind, name, t in named:  # per tensor: parameter objects kept (optimisers, hooks hold them)
        if kind == "parameter":
            t.data = t.data.to(dtype)
        else:
            owner._buffers[name] = t.to(dtype)
    try:
        yield module
    finally:
        for owner, kind, name, value in saved:
            if kind == "parameter":
                param = owner._parameters[name]
                param.data = value.to(param.device)
            else:
                owner._buffers[name] = value.to(owner._buffers[name].device)


__all__ = ["borrowed", "cast_borrowed"]
