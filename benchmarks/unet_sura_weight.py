"""How large is SuRA's pull on the subject LoRA, relative to the denoising loss? (the U-Net lambda)

    python benchmarks/unet_sura_weight.py

The supplementary gives no lambda for the U-Net. For each tiny model (random weights, the tests' sizes)
this prints the median over 12 random (t, noise) draws of |grad_LoRA L_SuRA| / |grad_LoRA L_denoise|
at lambda = 1: the DiT (Wan, SuRA on block 0, flow loss), the U-Net with RAA (mid block, epsilon loss)
and the U-Net without RAA. The U-Net's default lambda is the one that gives SuRA the same share of the
gradient as the DiT recipe's lambda = 0.05: 0.05 * ratio(Wan) / ratio(U-Net, RAA). CPU, a few seconds.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

warnings.filterwarnings("ignore", message=".*deprecated.*")


def grad_ratio(loss_pair, params, draws: int = 12) -> float:
    def norm(grads):
        return sum(float(g.norm() ** 2) for g in grads if g is not None) ** 0.5

    ratios = []
    for i in range(draws):
        denoise, sura = loss_pair(i)
        g_denoise = torch.autograd.grad(denoise, params, retain_graph=True, allow_unused=True)
        g_sura = torch.autograd.grad(sura, params, allow_unused=True)
        ratios.append(norm(g_sura) / norm(g_denoise))
    return float(np.median(ratios))


def wan_ratio() -> float:
    from smrabooth.align.sura import build_projector, sura_loss, tokens_on_grid
    from smrabooth.data.subject import encode_image_latent
    from smrabooth.models.dinov2 import build_tiny_dinov2, dinov2_patch_features
    from smrabooth.models.tiny import build_tiny_wan_pipeline
    from smrabooth.train.common import add_lora_adapter
    from smrabooth.train.subject import masked_flow_loss

    pipe, dino = build_tiny_wan_pipeline(), build_tiny_dinov2()
    tr = pipe.transformer
    params = add_lora_adapter(tr, "subject", 4, 4.0, ("q", "k", "v", "o", "ffn.0", "ffn.2"))
    g = torch.Generator().manual_seed(0)
    img = torch.rand(3, 64, 64, generator=g)
    with torch.no_grad():
        z0 = encode_image_latent(pipe.vae, img)[None]
        tokens = tokens_on_grid(dinov2_patch_features(dino, img[None], (4, 4)), (4, 4))
        emb, _ = pipe.encode_prompt("a picture of V* ball", do_classifier_free_guidance=False, device="cpu")
    proj, hidden = build_projector(32, 32, 32), {}
    tr.blocks[0].register_forward_hook(lambda m, i, o: hidden.__setitem__("h", o))

    def losses(i):
        s, noise = torch.rand(1, generator=g), torch.randn(z0.shape, generator=g)
        u = tr((1 - s) * z0 + s * noise, s * 1000, emb, return_dict=False)[0]
        return masked_flow_loss(u, noise - z0, torch.ones(1, 1, 1, 8, 8)), sura_loss(tokens, hidden.pop("h"), proj)

    return grad_ratio(losses, params)


def unet_ratio(raa: bool) -> float:
    from smrabooth.align.raa import RAABlock, direct_sura_loss, raa_sura_loss
    from smrabooth.lora.unet import add_unet_adapter
    from smrabooth.models.dinov2 import build_tiny_dinov2, dinov2_patch_features
    from smrabooth.models.unet import build_tiny_zeroscope_pipeline
    from smrabooth.train.subject import masked_flow_loss
    from smrabooth.train.unet import add_noise, block_of

    pipe, dino = build_tiny_zeroscope_pipeline(), build_tiny_dinov2()
    unet = pipe.unet
    params = add_unet_adapter(unet, "subject", 4, 4.0, "spatial")
    g = torch.Generator().manual_seed(0)
    img = torch.rand(1, 3, 64, 64, generator=g)
    with torch.no_grad():
        z0 = pipe.vae.encode(img * 2 - 1).latent_dist.mode()[:, :, None] * pipe.vae.config.scaling_factor
        tokens = dinov2_patch_features(dino, img, (4, 4))
        emb, _ = pipe.encode_prompt("a picture of V* ball", "cpu", 1, False)
    block, dim = block_of(unet, "mid")
    head, hidden = RAABlock(dim, 32, 32), {}
    block.register_forward_hook(lambda m, i, o: hidden.__setitem__("h", o))
    abar, fn = pipe.scheduler.alphas_cumprod, raa_sura_loss if raa else direct_sura_loss

    def losses(i):
        t, noise = torch.randint(1000, (1,), generator=g), torch.randn(z0.shape, generator=g)
        eps = unet(add_noise(z0, noise, abar[t]), t, encoder_hidden_states=emb).sample
        return masked_flow_loss(eps, noise, torch.ones(1, 1, 1, 8, 8)), fn(head, hidden.pop("h"), tokens)

    return grad_ratio(losses, params)


def main():
    wan, raa, direct = wan_ratio(), unet_ratio(True), unet_ratio(False)
    print(f"{'model':28s} {'|grad SuRA|/|grad denoise|':>27s}")
    for name, r in (("Wan (DiT), SuRA block 0", wan), ("ZeroScope (U-Net), RAA", raa), ("ZeroScope, w/o RAA", direct)):
        print(f"{name:28s} {r:27.4f}")
    print(f"lambda giving the U-Net (RAA) the DiT's SuRA share at 0.05: {0.05 * wan / raa:.3f}")


if __name__ == "__main__":
    main()
