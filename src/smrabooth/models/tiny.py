"""A tiny Wan2.1 text-to-video pipeline built in code, with random weights.

Same classes as the real model (WanTransformer3DModel, AutoencoderKLWan, UMT5EncoderModel, a fast
tokenizer, UniPC with flow sigmas), so every code path that runs on the real 1.3B/14B model runs on
this one in seconds on a CPU. It is what the tests use, and it can be saved with `save_pretrained`
and loaded back through the normal `--model` path.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

# Words the tiny tokenizer knows; anything else becomes <unk>. Placeholder tokens are in it so that
# "V*" and "S*" get ids of their own, as they would in a trained word-level vocabulary.
TINY_VOCAB = (
    "a an the of on in at with and doing is are to picture video photo V* S* dog cat car person "
    "red green blue yellow white black orange purple pink brown gray striped dotted checked solid "
    "star square circle triangle sprite ball moving left right up down circle spin bounce "
    "background beach street room park sky grass snow water dribble dribbling basketball walking "
    "running jumping dancing spinning flying , ."
).split()


@dataclass
class TinyWanConfig:
    """Sizes of the tiny model. Defaults keep a 9-frame 32x32 sample under a second on a CPU."""

    num_layers: int = 2
    num_attention_heads: int = 2
    attention_head_dim: int = 16
    ffn_dim: int = 64
    text_dim: int = 32
    text_layers: int = 2
    vae_base_dim: int = 8
    vae_dim_mult: tuple[int, ...] = (1, 1, 1, 1)  # 4 levels: 8x spatial downsampling, as the real VAE
    vae_num_res_blocks: int = 1
    text_heads: int = 4
    flow_shift: float = 3.0
    words: tuple[str, ...] = tuple(TINY_VOCAB)  # the tokenizer's vocabulary
    seed: int = 0


def build_tiny_tokenizer(words=TINY_VOCAB):
    """A word-level fast tokenizer (pad=0, eos=1, unk=2) over `words`, wrapped for transformers."""
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2}
    for word in words:
        vocab.setdefault(word.lower(), len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    # Split on whitespace and on . and , but keep "v*" whole.
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Split(pattern=Regex(r"[.,]"), behavior="isolated")]
    )
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>", model_max_length=512
    )


def build_tiny_wan_pipeline(config: TinyWanConfig | None = None):
    """Return a `diffusers.WanPipeline` with tiny random components (fp32, CPU)."""
    from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanPipeline, WanTransformer3DModel
    from transformers import UMT5Config, UMT5EncoderModel

    cfg = config or TinyWanConfig()
    tokenizer = build_tiny_tokenizer(cfg.words)

    torch.manual_seed(cfg.seed)
    text_encoder = UMT5EncoderModel(
        UMT5Config(
            vocab_size=len(tokenizer),
            d_model=cfg.text_dim,
            d_kv=cfg.text_dim // cfg.text_heads,
            d_ff=cfg.text_dim * 2,
            num_layers=cfg.text_layers,
            num_heads=cfg.text_heads,
            relative_attention_num_buckets=8,
            pad_token_id=0,
            eos_token_id=1,
            decoder_start_token_id=0,
        )
    ).eval()
    torch.manual_seed(cfg.seed + 1)
    vae = AutoencoderKLWan(
        base_dim=cfg.vae_base_dim,
        z_dim=16,
        dim_mult=list(cfg.vae_dim_mult),
        num_res_blocks=cfg.vae_num_res_blocks,
        temperal_downsample=[False, True, True],
    ).eval()
    torch.manual_seed(cfg.seed + 2)
    transformer = WanTransformer3DModel(
        patch_size=(1, 2, 2),
        num_attention_heads=cfg.num_attention_heads,
        attention_head_dim=cfg.attention_head_dim,
        in_channels=16,
        out_channels=16,
        text_dim=cfg.text_dim,
        freq_dim=32,
        ffn_dim=cfg.ffn_dim,
        num_layers=cfg.num_layers,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        rope_max_seq_len=32,
    ).eval()
    # The scheduler the real Wan2.1 diffusers checkpoints ship with.
    scheduler = UniPCMultistepScheduler(
        prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=cfg.flow_shift, num_train_timesteps=1000
    )
    return WanPipeline(
        tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, transformer=transformer, scheduler=scheduler
    )


WAN22_KINDS = ("a14b", "ti2v")


def build_tiny_wan22_pipeline(kind: str = "a14b", config: TinyWanConfig | None = None, boundary_ratio: float = 0.875):
    """A tiny Wan2.2 `WanPipeline` (random weights, fp32, CPU), the same classes and switches as the real ones:

    a14b  Wan2.2-T2V-A14B's form: two experts, `transformer` (high noise) and `transformer_2` (low noise), switched
          at `boundary_ratio` x 1000 timesteps; Wan2.1's 16-channel VAE.
    ti2v  Wan2.2-TI2V-5B's form: one transformer on the 48-channel Wan2.2 VAE (residual blocks, 2x2 patchified
          pixels, 16x spatial compression) with `expand_timesteps` (one timestep per token).
    """
    from diffusers import AutoencoderKLWan, WanPipeline, WanTransformer3DModel

    cfg = config or TinyWanConfig()
    base = build_tiny_wan_pipeline(cfg)
    if kind == "a14b":
        torch.manual_seed(cfg.seed + 3)
        low = WanTransformer3DModel.from_config(base.transformer.config).eval()  # its own random weights
        return WanPipeline(tokenizer=base.tokenizer, text_encoder=base.text_encoder, vae=base.vae,
                           transformer=base.transformer, transformer_2=low, scheduler=base.scheduler,
                           boundary_ratio=boundary_ratio)
    if kind != "ti2v":
        raise ValueError(f"tiny Wan2.2 kind {kind!r}: choose from {', '.join(WAN22_KINDS)}")
    g = torch.Generator().manual_seed(cfg.seed + 4)
    torch.manual_seed(cfg.seed + 1)
    vae = AutoencoderKLWan(
        base_dim=cfg.vae_base_dim, decoder_base_dim=cfg.vae_base_dim, z_dim=48, in_channels=12, out_channels=12,
        is_residual=True, patch_size=2, dim_mult=list(cfg.vae_dim_mult), num_res_blocks=cfg.vae_num_res_blocks,
        temperal_downsample=[False, True, True], scale_factor_spatial=16, scale_factor_temporal=4,
        # latent statistics that are not 0/1, so a missing (de)normalisation shows in every test
        latents_mean=(torch.randn(48, generator=g) * 0.2).tolist(),
        latents_std=(0.5 + torch.rand(48, generator=g)).tolist(),
    ).eval()
    torch.manual_seed(cfg.seed + 2)
    transformer = WanTransformer3DModel.from_config({**base.transformer.config, "in_channels": 48,
                                                     "out_channels": 48}).eval()
    return WanPipeline(tokenizer=base.tokenizer, text_encoder=base.text_encoder, vae=vae, transformer=transformer,
                       scheduler=base.scheduler, expand_timesteps=True)
