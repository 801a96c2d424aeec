"""The rows of the parity table: what is compared, at which tolerance, and why.

A row compares one quantity of the authors' run with ours: the max abs difference over everything it covers,
against a tolerance. Tolerances are relative to the largest |value| on their side (`rel`), so one number serves
tensors of any scale, and each names its reason:

FP32   the same float32 math in two implementations (DiffSynth's WanModel/VAE vs diffusers'; their sinusoidal
       time embedding is computed in float64, diffusers' in float32; op order differs): about 1e-6 relative per
       op, a few 1e-5 after a DiT forward and backward.
ADAM   AdamW's first steps move each weight by about lr * sign(grad); a gradient entry within float noise of
       zero can take the other sign, so LoRA values after a few steps are compared at a fraction of lr.
EXACT  integers, settings, dtypes, the lr schedule: no difference allowed.
BF16   their scripts' bfloat16 (weights, activations, LoRA, optimizer): two implementations round differently,
       about 1e-2 relative after a DiT forward and backward.
A planted 1% change of one factor (the bell weight) moves the losses by 1e-2 relative: above every FP32 row.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

FP32, FP32_GRAD, ADAM_FRACTION, BF16 = 1e-4, 1e-3, 0.05, 3e-2


@dataclass
class Row:
    name: str
    diff: float  # max abs difference (nan: could not be compared)
    tol: float  # absolute tolerance
    scale: float  # max |theirs|
    why: str

    @property
    def ok(self) -> bool:
        return self.diff == self.diff and self.diff <= self.tol


class Sketch(torch.Tensor):
    """A sketch of their tensor (the CI fixture holds these): ours is sketched the same way before comparing."""


def tensor_row(name: str, theirs, ours, rel: float, why: str, floor: float = 0.0) -> Row:
    """theirs/ours: tensors or lists of tensors (paired); shapes must agree (else the row fails)."""
    theirs = theirs if isinstance(theirs, (list, tuple)) else [theirs]
    ours = ours if isinstance(ours, (list, tuple)) else [ours]
    ours = [sketch(o) if isinstance(t, Sketch) else o for t, o in zip(theirs, ours)]
    if len(theirs) != len(ours) or not theirs:
        return Row(name, float("nan"), 0.0, 0.0, f"{why} [theirs {len(theirs)} values, ours {len(ours)}]")
    diff, scale = 0.0, 0.0
    for a, b in zip(theirs, ours):
        a, b = torch.as_tensor(a).double(), torch.as_tensor(b).double()
        if a.numel() != b.numel():
            return Row(name, float("nan"), 0.0, 0.0, f"{why} [shapes {tuple(a.shape)} vs {tuple(b.shape)}]")
        diff = max(diff, float((a.reshape(-1) - b.reshape(-1)).abs().max()))
        scale = max(scale, float(a.abs().max()))
    return Row(name, diff, max(rel * scale, floor), scale, why)


def exact_row(name: str, theirs, ours, why: str = "EXACT") -> Row:
    same = theirs == ours
    return Row(name, 0.0 if same else float("inf"), 0.0, 0.0, why if same else f"{why}: theirs {theirs}, ours {ours}")


def print_table(rows: list[Row], out=None) -> None:
    import sys

    out = out or sys.stdout
    width = max(len(r.name) for r in rows)
    print(f"{'row':{width}s}  {'max abs diff':>12s}  {'tolerance':>10s}  {'max|theirs|':>11s}  result  why", file=out)
    for r in rows:
        print(f"{r.name:{width}s}  {r.diff:12.3g}  {r.tol:10.3g}  {r.scale:11.3g}  {'pass' if r.ok else 'FAIL':6s}  "
              f"{r.why}", file=out)
    failed = sum(not r.ok for r in rows)
    print(f"{len(rows) - failed} passed, {failed} failed", file=out)


SKETCH_SIZE = 8


def sketch(x) -> torch.Tensor:
    """A tensor's fingerprint for the CI fixture: 8 fixed random projections of it (float64), scaled by 1/sqrt(n).
    Linear, so a relative error of the tensor is a relative error of its sketch of the same order; 8 numbers
    instead of thousands keep the fixture small."""
    v = torch.as_tensor(x).double().reshape(-1)
    g = torch.Generator().manual_seed(1000003 + v.numel())
    directions = torch.randn(SKETCH_SIZE, v.numel(), generator=g, dtype=torch.float64)
    return directions @ v / v.numel() ** 0.5
