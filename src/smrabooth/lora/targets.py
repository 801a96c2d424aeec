"""Which layers of a Wan transformer block carry LoRA, by short name.

The paper names six layer types; in diffusers' `WanTransformer3DModel` they are the q, k, v and
output projections of self-attention (`attn1`) and cross-attention (`attn2`), and the two FFN
linears. Which layer types each LoRA acts on when the two are combined at inference is a setting of
the recipe (recipes.SamplerRecipe, docs/method.md stage 3).
"""

from __future__ import annotations

from ..errors import SmraboothError

# short name -> module-path suffixes inside a block (diffusers names)
LAYER_TYPES: dict[str, tuple[str, ...]] = {
    "q": ("attn1.to_q", "attn2.to_q"),
    "k": ("attn1.to_k", "attn2.to_k"),
    "v": ("attn1.to_v", "attn2.to_v"),
    "o": ("attn1.to_out.0", "attn2.to_out.0"),
    "ffn.0": ("ffn.net.0.proj",),
    "ffn.2": ("ffn.net.2",),
}
ALL_LAYER_TYPES: tuple[str, ...] = tuple(LAYER_TYPES)


def parse_layer_types(text: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """'q,k,ffn.0' -> ('q', 'k', 'ffn.0'), with a clear error for unknown names."""
    names = [t.strip() for t in text.split(",")] if isinstance(text, str) else list(text)
    names = [n for n in names if n]
    unknown = [n for n in names if n not in LAYER_TYPES]
    if unknown or not names:
        raise SmraboothError(
            f"unknown LoRA layer type(s) {unknown or names!r}: choose from {', '.join(ALL_LAYER_TYPES)}"
        )
    return tuple(dict.fromkeys(names))


def module_suffixes(layer_types: tuple[str, ...] | list[str]) -> list[str]:
    """The peft `target_modules` suffixes for a set of layer types."""
    return [suffix for t in layer_types for suffix in LAYER_TYPES[t]]


def layer_type_of(module_path: str) -> str | None:
    """'blocks.3.attn2.to_k' (optionally with a 'transformer.' prefix) -> 'k'; None if not a LoRA target."""
    for name, suffixes in LAYER_TYPES.items():
        if any(module_path == s or module_path.endswith("." + s) for s in suffixes):
            return name
    return None
