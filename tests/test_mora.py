"""MoRA building blocks: one-step z0, window bookkeeping, the flow L1 loss, differentiable VAE decode."""

import pytest
import torch
from torch import nn

from smrabooth.align import (
    decode_window,
    mora_loss,
    one_step_z0,
    reference_flows,
    valid_window_starts,
    window_ref_flows,
    window_source_frames,
)
from smrabooth.errors import InternalError, SmraboothError
from smrabooth.models.vae_decode import (
    decode_latents_differentiable,
    denormalize_latents,
    normalize_latents,
    to_unit_frames,
)


@pytest.fixture(scope="module")
def vae():
    from diffusers import AutoencoderKLWan

    torch.manual_seed(0)
    model = AutoencoderKLWan(
        base_dim=8, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True]
    )
    # Non-trivial latent statistics, so that (de)normalisation is exercised.
    model.register_to_config(
        latents_mean=torch.linspace(-1, 1, 16).tolist(), latents_std=torch.linspace(0.5, 3, 16).tolist()
    )
    return model.eval().requires_grad_(False)


class TinyFlow(nn.Module):
    """Differentiable stand-in for SEA-RAFT: (image1, image2) -> (N, 2, H, W)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.net = nn.Sequential(nn.Conv2d(6, 8, 3, padding=1), nn.Tanh(), nn.Conv2d(8, 2, 3, padding=1))

    def forward(self, image1, image2):
        return self.net(torch.cat([image1, image2 - image1], dim=1))


@pytest.fixture()
def flow_net():
    return TinyFlow().eval().requires_grad_(False)


# --- flow matching ----------------------------------------------------------------------------------


def test_one_step_z0_matches_euler_step_to_zero():
    from diffusers import FlowMatchEulerDiscreteScheduler

    sched = FlowMatchEulerDiscreteScheduler(shift=5.0)
    sched.set_timesteps(sigmas=[0.9, 0.6, 0.3])  # shifted by 5; the scheduler appends a final sigma of 0
    assert sched.sigmas[-1] == 0
    torch.manual_seed(0)
    z_t, u = torch.randn(2, 16, 3, 4, 4), torch.randn(2, 16, 3, 4, 4)
    sched._step_index = 2  # the last step: sigma_2 -> 0
    expected = sched.step(u, sched.timesteps[2], z_t).prev_sample
    got = one_step_z0(z_t, u, sched.sigmas[2])
    torch.testing.assert_close(got, expected)
    assert not torch.allclose(got, z_t)


def test_one_step_z0_inverts_flow_matching_per_batch_sigma():
    torch.manual_seed(0)
    z0, eps = torch.randn(3, 16, 2, 4, 4), torch.randn(3, 16, 2, 4, 4)
    sigma = torch.tensor([0.1, 0.5, 0.95])
    s = sigma.view(3, 1, 1, 1, 1)
    z_t = (1 - s) * z0 + s * eps
    torch.testing.assert_close(one_step_z0(z_t, eps - z0, sigma), z0)  # true velocity -> z0 back
    torch.testing.assert_close(one_step_z0(z_t[:1], (eps - z0)[:1], 0.1), z0[:1])  # float sigma
    with pytest.raises(InternalError):  # an internal invariant, not the user's input
        one_step_z0(z_t, eps - z0, torch.tensor([0.1, 0.5]))


# --- window bookkeeping -----------------------------------------------------------------------------


def test_window_starts_and_source_frames():
    assert valid_window_starts(13) == [0, 2, 4, 6]  # 49 frames
    assert valid_window_starts(6) == [0]
    assert valid_window_starts(8, window=4, stride=3) == [0, 3]
    assert valid_window_starts(21) == [0, 2, 4, 6, 8, 10, 12, 14]  # 81 frames
    assert window_source_frames(0) == range(5, 21)
    assert window_source_frames(6) == range(29, 45)
    assert len(window_source_frames(2)) == 16
    assert window_source_frames(1, window=3, drop=1) == range(5, 13)
    for num in (6, 7, 13, 21):  # the last window never runs past the clip's 1 + 4(num-1) frames
        last = valid_window_starts(num)[-1]
        assert last + 6 <= num and last + 6 + 2 > num
        assert window_source_frames(last).stop <= 1 + 4 * (num - 1)


def test_window_ref_flows_slices_matching_pairs():
    flows = torch.arange(48.0).view(48, 1, 1, 1).expand(48, 2, 3, 3)  # flow k: frame k -> k+1, 49 frames
    sl = window_ref_flows(flows, 6)
    assert sl.shape == (15, 2, 3, 3)
    assert sl[:, 0, 0, 0].tolist() == list(range(29, 44))
    with pytest.raises(InternalError, match="valid_window_starts"):
        window_ref_flows(flows, 8)


@pytest.mark.parametrize(
    "call",
    [
        lambda: valid_window_starts(5),
        lambda: valid_window_starts(13, window=0),
        lambda: valid_window_starts(13, stride=0),
        lambda: window_source_frames(0, window=6, drop=20),
        lambda: window_source_frames(0, window=1, drop=0),
    ],
)
def test_bad_window_arguments_raise(call):
    with pytest.raises(SmraboothError):
        call()


def test_a_broken_invariant_is_not_a_user_error():
    """No setting reaches a negative window start: it is a bug (InternalError), never reported as bad input."""
    with pytest.raises(InternalError) as e:
        window_source_frames(-1)
    assert not isinstance(e.value, SmraboothError)


def test_window_frame_mapping_on_tiny_vae(vae):
    """Kept frame d of the window at latent s lines up with source frame 4s + d.

    Checked structurally (random weights do not reconstruct, so matching pixels is meaningless):
    at s = 0 the window decode equals the full decode; at s > 0 the newest source frames a decoded
    frame d depends on (through encode -> slice -> decode, both causal) are the 4-frame group that
    holds source frame 4s + d.
    """
    torch.manual_seed(0)
    clip = torch.rand(1, 3, 29, 16, 16) * 2 - 1  # 8 latents
    with torch.no_grad():
        z = normalize_latents(vae, vae.encode(clip).latent_dist.mode())
        full = decode_latents_differentiable(vae, z)
        torch.testing.assert_close(decode_latents_differentiable(vae, z[:, :, :6]), full[:, :, :21])

    s = 2
    clip.requires_grad_(True)
    z = normalize_latents(vae, vae.encode(clip).latent_dist.mode())
    win = decode_latents_differentiable(vae, z[:, :, s : s + 6], clamp=False)
    assert win.shape[2] == 21
    for d, k in zip(range(5, 21), window_source_frames(s)):
        (grad,) = torch.autograd.grad(win[:, :, d].sum(), clip, retain_graph=True)
        depends = grad[0].abs().sum(dim=(0, 2, 3)) > 0  # per source frame
        newest = int(depends.nonzero().max())
        assert newest - 3 <= k <= newest, (d, k, newest)
        assert newest == 4 * (s + (d + 3) // 4)


# --- the loss ---------------------------------------------------------------------------------------


def test_mora_loss_zero_on_reference_positive_otherwise(flow_net):
    torch.manual_seed(0)
    frames = torch.rand(6, 3, 16, 16)
    ref = reference_flows(frames, flow_net)  # one batch, like mora_loss's single flow_fn call
    assert ref.shape == (5, 2, 16, 16)
    torch.testing.assert_close(reference_flows(frames, flow_net, batch_size=2), ref)  # batching changes nothing
    assert mora_loss(frames, ref, flow_net).item() == 0.0
    assert mora_loss(frames[None].expand(2, -1, -1, -1, -1), ref, flow_net).item() == 0.0
    per_item = torch.stack([ref, ref + 1.0])  # one reference per batch item: errors 0 and 1 -> mean 0.5
    torch.testing.assert_close(mora_loss(frames[None].expand(2, -1, -1, -1, -1), per_item, flow_net), torch.tensor(0.5))
    other = frames.roll(1, dims=0)
    expected = (flow_net(other[:-1], other[1:]) - ref).abs().mean()
    torch.testing.assert_close(mora_loss(other, ref, flow_net), expected)
    assert expected > 0
    with pytest.raises(InternalError):
        mora_loss(frames, ref[:-1], flow_net)
    with pytest.raises(SmraboothError):
        reference_flows(frames[:1], flow_net)


def test_chunked_checkpointed_flows_equal_one_call(flow_net):
    torch.manual_seed(3)
    ref = torch.randn(5, 2, 16, 16)
    results = []
    for chunk in (None, 2, 5):  # 2 does not divide the 5 pairs: the last chunk is short
        frames = torch.rand(6, 3, 16, 16, generator=torch.Generator().manual_seed(0)).requires_grad_(True)
        loss = mora_loss(frames, ref, flow_net, chunk=chunk)
        loss.backward()
        results.append((loss.detach(), frames.grad))
    assert results[0][1].abs().sum() > 0
    for loss, grad in results[1:]:
        torch.testing.assert_close(loss, results[0][0])
        torch.testing.assert_close(grad, results[0][1])
    with pytest.raises(SmraboothError, match="chunk"):
        mora_loss(torch.rand(6, 3, 16, 16), ref, flow_net, chunk=0)


def test_mora_gradient_reaches_latents_through_decoder_only(vae, flow_net):
    torch.manual_seed(0)
    z = torch.randn(1, 16, 8, 2, 2, requires_grad=True)  # window at latent 1: latents 1..6
    with torch.no_grad():
        ref_frames = to_unit_frames(decode_latents_differentiable(vae, torch.randn(1, 16, 8, 2, 2)))[0]
    ref = window_ref_flows(reference_flows(ref_frames, flow_net), 1)
    kept = decode_window(vae, z, start=1)
    assert kept.shape == (1, 16, 3, 16, 16)
    assert 0 <= kept.min() and kept.max() <= 1
    loss = mora_loss(kept, ref, flow_net)
    loss.backward()
    assert loss > 0
    assert z.grad[:, :, 1:7].abs().sum() > 0  # the window's latents get gradient
    assert z.grad[:, :, 0].abs().sum() == 0 and z.grad[:, :, 7:].abs().sum() == 0  # the rest none
    frozen = list(vae.parameters()) + list(flow_net.parameters())
    assert all(p.grad is None for p in frozen)


# --- differentiable decode --------------------------------------------------------------------------


def test_denormalize_matches_wan_pipeline_formula(vae):
    z = torch.randn(1, 16, 2, 2, 2)
    mean = torch.tensor(vae.config.latents_mean).view(1, 16, 1, 1, 1)
    std = 1.0 / torch.tensor(vae.config.latents_std).view(1, 16, 1, 1, 1)
    torch.testing.assert_close(denormalize_latents(vae, z), z / std + mean)
    torch.testing.assert_close(normalize_latents(vae, denormalize_latents(vae, z)), z)


def test_checkpointed_decode_equals_plain_and_stock(vae):
    torch.manual_seed(0)
    z = torch.randn(2, 16, 4, 3, 2)
    weight = torch.randn(2, 3, 13, 24, 16)
    with torch.no_grad():
        stock = vae.decode(denormalize_latents(vae, z)).sample
    grads = []
    # plain, per frame, per block, and per frame / per block with the last 2 of 4 latent frames stored
    for checkpoint, store_last in ((False, 0), (True, 0), ("block", 0), ("frame", 2), ("block", 2)):
        zz = z.clone().requires_grad_(True)
        out = decode_latents_differentiable(vae, zz, checkpoint=checkpoint, store_last=store_last)
        assert out.shape == stock.shape == (2, 3, 13, 24, 16)
        torch.testing.assert_close(out, stock)
        (out * weight).sum().backward()
        grads.append(zz.grad)
    assert grads[0].abs().sum() > 0
    for grad in grads[1:]:
        torch.testing.assert_close(grad, grads[0])
    assert all(p.grad is None for p in vae.parameters())


def test_authors_frame_range_hands_searaft_the_prediction_in_minus_255_to_255(vae):
    """Their MoRA feeds SEA-RAFT the decoded prediction as [-1, 1] x 255 and the reference as [0, 255]; the flow
    model takes [0, 1] and multiplies by 255 (compute_flow), so `authors` hands it the decode's [-1, 1] itself:
    2 x (the matched frames) - 1, with values below 0."""
    from smrabooth.align.mora import decode_window

    z = torch.randn(1, 16, 4, 4, 4, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        matched = decode_window(vae, z, 1, 3, 1, frame_range="matched")
        authors = decode_window(vae, z, 1, 3, 1, frame_range="authors")
    assert matched.shape == authors.shape == (1, 8, 3, 32, 32)
    torch.testing.assert_close(authors, 2 * matched - 1)
    assert float(matched.min()) >= 0 and float(authors.min()) < 0 <= float(matched.min())
    with pytest.raises(SmraboothError, match="--mora-frame-range 'unit': choose matched, authors"):
        decode_window(vae, z, 1, 3, 1, frame_range="unit")


def test_decode_rejects_unknown_checkpoint_mode(vae):
    with pytest.raises(SmraboothError, match="choose from none, frame, block"):
        decode_latents_differentiable(vae, torch.randn(1, 16, 2, 2, 2), checkpoint="layer")


def test_checkpointed_decode_gradient_matches_stock_decode_autograd(vae):
    torch.manual_seed(1)
    z = torch.randn(1, 16, 3, 2, 2)
    zs, zc = z.clone().requires_grad_(True), z.clone().requires_grad_(True)
    vae.decode(denormalize_latents(vae, zs)).sample.square().sum().backward()
    decode_latents_differentiable(vae, zc, checkpoint=True).square().sum().backward()
    torch.testing.assert_close(zc.grad, zs.grad)


def test_decode_rejects_wrong_latent_shape(vae):
    with pytest.raises(InternalError, match="expected latents"):
        decode_latents_differentiable(vae, torch.randn(1, 4, 2, 2, 2))


def test_tiled_decode_blends_tiles_with_their_ramps(monkeypatch):
    """The authors' tiled decode on a 6x7 latent with 4x5 tiles every 2x2 (patched sizes; theirs are 30x52 every
    15x26): tiles start at rows 0, 2 and columns 0, 2, ramps of 2 and 3 pixels on the sides that meet another
    tile. A fake decode adds 0.1 x the tile's index (0..3, rows outer) to a zero latent, so each pixel holds the
    weighted mean of the indices of the tiles covering it; three pixels computed by hand (asymmetric: a
    transposed mask gives other values)."""
    import smrabooth.align.mora as mora

    monkeypatch.setattr(mora, "TILE", (4, 5))
    monkeypatch.setattr(mora, "TILE_STRIDE", (2, 2))
    calls = []

    def fake_decode(z):
        calls.append(tuple(z.shape[-2:]))
        return z[:, :3] + 0.1 * (len(calls) - 1)

    latents = torch.zeros(1, 4, 1, 6, 7, requires_grad=True)
    out = mora.decode_tiled(fake_decode, latents)
    assert calls == [(4, 5)] * 4 and out.shape == (1, 3, 1, 6, 7)
    frame = out[0, 0, 0]
    torch.testing.assert_close(frame[3, 3], torch.tensor(0.1 * 23 / 14))  # all four tiles: weights 1/2, 1/2, 2/3, 2/3
    torch.testing.assert_close(frame[1, 5], torch.tensor(0.1))  # tile 1 alone
    torch.testing.assert_close(frame[2, 2], torch.tensor(0.1 * 14 / 13))  # weights 1, 1/3, 1/2, 1/3
    out.sum().backward()
    torch.testing.assert_close(latents.grad[0, :3], torch.ones(3, 1, 6, 7))  # the blend weights sum to one
    assert latents.grad[0, 3].abs().sum() == 0


def test_tile_starts_are_their_task_lists():
    """Their tile lists at 576x320 (latents 40x72: 2 x 2 tiles) and 832x480 (60x104: 3 x 3)."""
    from smrabooth.align.mora import TILE, TILE_STRIDE, tile_starts

    assert (tile_starts(40, TILE[0], TILE_STRIDE[0]), tile_starts(72, TILE[1], TILE_STRIDE[1])) == ([0, 15], [0, 26])
    assert (tile_starts(60, TILE[0], TILE_STRIDE[0]), tile_starts(104, TILE[1], TILE_STRIDE[1])) == ([0, 15, 30],
                                                                                                    [0, 26, 52])
    assert tile_starts(8, 30, 15) == [0]  # smaller than one tile: one (cut) tile, the whole decode
