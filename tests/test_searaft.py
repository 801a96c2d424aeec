"""SEA-RAFT: tiny random-weight model on CPU. Equivalence with the official code is checked separately
(scripts/check_searaft_equivalence.py, results in benchmarks/README.md)."""

import re
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_model

from smrabooth.errors import SmraboothError
from smrabooth.models.searaft import (
    SEARAFT,
    SEARAFT_M,
    SEARAFT_TINY,
    SEARAFTConfig,
    build_corr_pyramid,
    compute_flow,
    load_searaft,
    lookup_corr,
    save_searaft,
)


def randomise(model, seed=0):
    """Random weights incl. BatchNorm statistics and layer scale (defaults 0/1/1e-6 would hide bugs);
    the flow head is scaled so flows stay at a few pixels."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict(keep_vars=True).items():
            if not t.is_floating_point():
                continue
            if name.endswith("running_var") or name.endswith("gamma"):
                t.copy_(0.5 + torch.rand(t.shape, generator=g))
            elif name.endswith(("bias", "running_mean")):
                t.copy_(0.1 * torch.randn(t.shape, generator=g))
            elif t.ndim == 1:  # norm weights
                t.copy_(0.5 + torch.rand(t.shape, generator=g))
            else:
                t.copy_(torch.randn(t.shape, generator=g) / t[0].numel() ** 0.5)
        model.flow_head[2].weight.mul_(0.05)
    return model.eval().requires_grad_(False)


@pytest.fixture(scope="module")
def model():
    return randomise(SEARAFT(SEARAFT_TINY))


def frames(b=1, h=131, w=141, seed=1):
    g = torch.Generator().manual_seed(seed)
    x1 = torch.rand(b, 3, h, w, generator=g)
    x2 = (0.7 * torch.roll(x1, shifts=(2, -3), dims=(2, 3)) + 0.3 * torch.rand(b, 3, h, w, generator=g)).clamp(0, 1)
    return x1, x2


def test_m_config_matches_official_size():
    # The -M model has 19.66M parameters (SEA-RAFT paper, Table 1); the tiny one is small.
    assert sum(p.numel() for p in SEARAFT(SEARAFT_M).parameters()) == 19_663_876
    assert SEARAFT_M.scale == -1 and SEARAFT_M.iters == 4


@pytest.mark.parametrize("h,w", [(131, 141), (128, 200), (137, 129)])
def test_output_shape_and_finite(model, h, w):
    x1, x2 = frames(2, h, w)
    flow = compute_flow(model, x1, x2)
    assert flow.shape == (2, 2, h, w)
    assert torch.isfinite(flow).all() and flow.abs().max() > 0


def test_half_scale_shape_and_official_rule():
    m = randomise(SEARAFT(replace(SEARAFT_TINY, scale=-1)))
    x1, x2 = frames(1, 259, 263)
    assert compute_flow(m, x1, x2).shape == (1, 2, 259, 263)
    # Even sizes: the official calc_flow rule written with scale_factor gives the same values.
    x1, x2 = frames(1, 272, 290)
    half = lambda x: F.interpolate(255 * x, scale_factor=0.5, mode="bilinear", align_corners=False)
    ref = F.interpolate(m(half(x1), half(x2))["final"], scale_factor=2.0, mode="bilinear", align_corners=False) * 2
    torch.testing.assert_close(compute_flow(m, x1, x2), ref, rtol=0, atol=1e-5)


def test_unit_range_convention(model):
    x1, x2 = frames()
    torch.testing.assert_close(compute_flow(model, x1, x2), model(255 * x1, 255 * x2)["final"], rtol=0, atol=1e-5)


def test_batch_equals_per_sample(model):
    x1, x2 = frames(3, 130, 133)
    batched = compute_flow(model, x1, x2)
    single = torch.cat([compute_flow(model, x1[i : i + 1], x2[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(batched, single, rtol=1e-4, atol=1e-4)


def test_padding_is_centred_and_cropped_back(model):
    # 131x141 is padded (replicate, centred) to 136x144; running on the padded frames directly and cropping
    # the same window must give the same flow.
    x1, x2 = frames(1, 131, 141)
    pad = [1, 2, 2, 3]  # left, right, top, bottom for 141 -> 144 and 131 -> 136
    p1, p2 = (F.pad(255 * x, pad, mode="replicate") for x in (x1, x2))
    ref = model(p1, p2)["final"][..., 2 : 2 + 131, 1 : 1 + 141]
    torch.testing.assert_close(compute_flow(model, x1, x2), ref, rtol=0, atol=1e-5)


def test_iterations_change_the_flow_and_default_is_settable(tmp_path, model):
    x1, x2 = frames()
    f1, f2 = compute_flow(model, x1, x2, iters=1), compute_flow(model, x1, x2, iters=2)
    assert (f1 - f2).abs().max() > 1e-3
    out = model(255 * x1, 255 * x2, iters=3, all_iterations=True)
    assert len(out["flow"]) == len(out["info"]) == 4 and out["info"][0].shape == (1, 4, 131, 141)
    torch.testing.assert_close(out["flow"][1], model(255 * x1, 255 * x2, iters=1)["final"], rtol=0, atol=1e-5)
    loaded = load_searaft(str(save_searaft(model, tmp_path / "ckpt")), iters=3)
    assert torch.equal(compute_flow(loaded, x1, x2), compute_flow(loaded, x1, x2, iters=3))


def test_gradients_reach_images_not_weights():
    m = randomise(SEARAFT(SEARAFT_TINY))
    x1, x2 = frames()
    x1.requires_grad_(True)
    x2.requires_grad_(True)
    compute_flow(m, x1, x2).square().mean().backward()
    for x in (x1, x2):
        assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in m.parameters())


def test_checkpointing_gives_same_values_and_gradients():
    m = randomise(SEARAFT(SEARAFT_TINY))
    grads, flows = [], []
    for use in (False, True):
        m.use_checkpointing = use
        x1, x2 = frames()
        x1.requires_grad_(True)
        flow = compute_flow(m, x1, x2)
        flow.square().mean().backward()
        flows.append(flow.detach())
        grads.append(x1.grad)
    torch.testing.assert_close(flows[0], flows[1], rtol=0, atol=0)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-5, atol=1e-8)


def test_correlation_lookup_against_direct_dot_products():
    # At integer target coordinates, level 0 of the lookup is a plain dot product of feature vectors
    # divided by sqrt(C); the window is ordered x-offset outer, y-offset inner (RAFT's layout).
    g = torch.Generator().manual_seed(0)
    b, c, h, w, r = 1, 5, 16, 16, 1
    f1, f2 = torch.randn(b, c, h, w, generator=g), torch.randn(b, c, h, w, generator=g)
    flow = torch.randint(-2, 3, (b, 2, h, w), generator=g).float()
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    coords = torch.stack([xs, ys])[None].float() + flow
    out = lookup_corr(build_corr_pyramid(f1, f2), coords, r)
    assert out.shape == (b, 4 * (2 * r + 1) ** 2, h, w)
    for y, x in [(5, 7), (10, 3), (8, 8)]:
        k = 0
        for dx in range(-r, r + 1):
            for dy in range(-r, r + 1):
                tx, ty = x + int(flow[0, 0, y, x]) + dx, y + int(flow[0, 1, y, x]) + dy
                ref = (f1[0, :, y, x] * f2[0, :, ty, tx]).sum() / c**0.5
                torch.testing.assert_close(out[0, k, y, x], ref, rtol=1e-5, atol=1e-5)
                k += 1
    # Outside the image, zero padding.
    far = lookup_corr(build_corr_pyramid(f1, f2), coords + 1000, r)
    assert far.abs().max() == 0


def test_convex_upsampling_layout():
    g = torch.Generator().manual_seed(0)
    flow, info = torch.randn(1, 2, 3, 4, generator=g), torch.randn(1, 4, 3, 4, generator=g)
    # All weight on the centre of the 3x3 neighbourhood: nearest-neighbour upsampling (flow x 8).
    mask = torch.full((1, 9, 64, 3, 4), -1e4)
    mask[:, 4] = 0
    up_flow, up_info = SEARAFT.upsample_data(flow, info, mask.view(1, 9 * 64, 3, 4))
    nearest = lambda t: t.repeat_interleave(8, 2).repeat_interleave(8, 3)
    torch.testing.assert_close(up_flow, 8 * nearest(flow))
    torch.testing.assert_close(up_info, nearest(info))
    # All weight on the right neighbour (index 5): each 8x8 cell takes the value of the cell to its right.
    mask = torch.full((1, 9, 64, 3, 4), -1e4)
    mask[:, 5] = 0
    up_flow, _ = SEARAFT.upsample_data(flow, info, mask.view(1, 9 * 64, 3, 4))
    torch.testing.assert_close(up_flow[..., :, :24], 8 * nearest(flow[..., :, 1:]))
    assert up_flow[..., :, 24:].abs().max() == 0  # zero padding beyond the border


def test_round_trip_folder_safetensors_pth(tmp_path, model):
    x1, x2 = frames()
    ref = compute_flow(model, x1, x2)
    folder = save_searaft(model, tmp_path / "folder")
    assert (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()
    save_model(model, str(tmp_path / "w.safetensors"))
    torch.save({"module." + k: v for k, v in model.state_dict().items()}, tmp_path / "w.pth")
    for path, cfg in [(folder, None), (tmp_path / "w.safetensors", SEARAFT_TINY), (tmp_path / "w.pth", SEARAFT_TINY)]:
        loaded = load_searaft(str(path), config=cfg)
        assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())
        assert loaded.config == SEARAFT_TINY
        assert torch.equal(compute_flow(loaded, x1, x2), ref), path


def test_official_style_config_json(tmp_path, model):
    # The official JSON configs carry many training keys; only the architecture ones are used.
    official = {"name": "x", "gpus": [0], "lr": 4e-4, "dataset": "spring", **SEARAFT_TINY.to_dict()}
    assert SEARAFTConfig.from_dict(official) == SEARAFT_TINY
    assert SEARAFTConfig.from_dict({"args": official}) == SEARAFT_TINY
    assert SEARAFTConfig.from_dict({"unrelated": 1}) is None


def _sd(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize(
    "edit,expected",
    [
        (
            lambda sd: sd.__setitem__("init_conv.weight", torch.zeros(3, 3, 3, 3)),
            "'init_conv.weight' has shape (3, 3, 3, 3)",
        ),
        (lambda sd: sd.pop("flow_head.2.bias"), "missing key 'flow_head.2.bias'"),
        (lambda sd: sd.__setitem__("extra.weight", torch.zeros(2)), "unexpected key 'extra.weight'"),
    ],
)
def test_bad_checkpoint_names_the_key(tmp_path, model, edit, expected):
    sd = _sd(model)
    edit(sd)
    torch.save(sd, tmp_path / "bad.pth")
    with pytest.raises(SmraboothError, match=re.escape(expected)) as e:
        load_searaft(str(tmp_path / "bad.pth"), config=SEARAFT_TINY)
    assert "bad.pth" in str(e.value)


def test_architecture_mismatch_names_first_key(tmp_path, model):
    torch.save(_sd(model), tmp_path / "tiny.pth")  # no config: the -M architecture is assumed
    with pytest.raises(SmraboothError, match=r"'cnet.conv1.weight' has shape \(8, 6, 7, 7\).*\(64, 6, 7, 7\)"):
        load_searaft(str(tmp_path / "tiny.pth"))


def test_bad_inputs(tmp_path, model):
    x1, x2 = frames(1, 100, 150)
    with pytest.raises(SmraboothError, match="at least 128"):
        compute_flow(model, x1, x2)
    half = randomise(SEARAFT(replace(SEARAFT_TINY, scale=-1)))
    with pytest.raises(SmraboothError, match=r"got 100x100.*200x200 frames are resized by 2\*\*-1"):
        compute_flow(half, *frames(1, 200, 200))
    with pytest.raises(SmraboothError, match="same shape"):
        compute_flow(model, *frames(1, 131, 141)[:1], frames(1, 131, 140)[0])
    with pytest.raises(SmraboothError, match="no such"):
        load_searaft(str(tmp_path / "nothing.pth"))
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(SmraboothError, match="junk.pth"):
        load_searaft(str(tmp_path / "junk.pth"))
    with pytest.raises(SmraboothError, match="huggingface-cli download"):
        load_searaft("nobody-xyz/no-such-searaft-checkpoint", local_files_only=True)
