"""Pretraining of the SMRA-Sprites models (preset "tiny", CPU): every stage trains and checkpoints, losses
fall on a fixed batch, a resumed run equals an uninterrupted one, the time limit stops a call, and the
assembled bundle loads and generates.

The VAE and DiT runs use 32x32 and 16x16 clips of 5 frames: the models are convolutional /
token-based, and full 128x128 clips would make each step seconds on a 2-core CPU.
"""

import dataclasses
import json
import shutil

import numpy as np
import pytest
import torch

from smrabooth.errors import SmraboothError
from smrabooth_sprites.pretrain import StageConfig, read_log, run_stage
from smrabooth_sprites.pretrain.cli import main as train_main

FAST = {"preset": "tiny", "workers": 0, "progress": False}


def losses(out, stage):
    return [r["loss"] for r in read_log(out / stage / "log.jsonl")]


def assert_falls(values, factor):
    first, last = values[0], float(np.mean(values[-3:]))
    assert last < factor * first, f"loss {first:.4f} -> {last:.4f} (wanted below {factor} x)"


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The tiny models gain nothing from a second thread, and two threads on a busy 2-core machine made
    steps up to 10x slower (oversubscription); one thread keeps this file fast and its timing stable."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """One training folder: each stage's fixture trains into it once."""
    return tmp_path_factory.mktemp("sprites_run")


@pytest.fixture(scope="module")
def vae_run(run_dir):
    # a fixed batch (clips=1) so the falling loss measures fitting, not the data
    run_stage(StageConfig(stage="vae", out=str(run_dir), size=32, frames=5, batch=2, clips=2, steps=25, lr=1e-3,
                          warmup=0, stats_clips=2, **FAST))
    return run_dir


@pytest.fixture(scope="module")
def dit_run(vae_run):
    run_stage(StageConfig(stage="dit", out=str(vae_run), size=16, frames=5, batch=2, steps=2, **FAST))
    return vae_run


@pytest.fixture(scope="module")
def dinov2_run(run_dir):
    run_stage(StageConfig(stage="dinov2", out=str(run_dir), batch=2, per_clip=1, clips=2, steps=20, lr=1e-3,
                          warmup=0, **FAST))
    return run_dir


@pytest.fixture(scope="module")
def searaft_run(run_dir):
    run_stage(StageConfig(stage="searaft", out=str(run_dir), batch=1, per_clip=1, clips=1, steps=20, lr=1e-3,
                          warmup=0, **FAST))
    return run_dir


def test_vae_stage_fits_a_fixed_batch_and_measures_latent_stats(vae_run):
    folder = vae_run / "vae"
    for name in ("config.json", "log.jsonl", "state.pt", "summary.json", "latent_stats.json"):
        assert (folder / name).is_file(), name
    log = read_log(folder / "log.jsonl")
    assert [r["step"] for r in log] == list(range(1, 26))
    assert {"loss", "l1", "mse", "kl", "psnr", "lr", "seconds"} <= set(log[0])
    assert_falls(losses(vae_run, "vae"), 0.3)  # measured 0.67 -> 0.10 (a plateau at 0.45 until step ~14)
    stats = json.loads((folder / "latent_stats.json").read_text())
    assert len(stats["latents_mean"]) == len(stats["latents_std"]) == 16 and stats["step"] == 25
    assert all(s > 0 for s in stats["latents_std"])
    state = torch.load(folder / "state.pt", weights_only=True)
    assert state["step"] == 25 and set(state["modules"]) == {"vae"}
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["steps"] == 25 and summary["batch"] == 2 and "loss" in summary["final"]
    # trained on 5 frames, checked on the preset's full length (tiny: 9), where short training shows
    recon = json.loads((folder / "reconstruction.json").read_text())
    assert recon["frames"] == 9 and len(recon["sprite"]) == len(recon["background"]) == 9


def test_dinov2_stage_loss_falls(dinov2_run):
    log = read_log(dinov2_run / "dinov2" / "log.jsonl")
    assert {"cls", "patch_region", "patch_color", "acc"} <= set(log[0])
    assert_falls(losses(dinov2_run, "dinov2"), 0.6)
    state = torch.load(dinov2_run / "dinov2" / "state.pt", weights_only=True)
    assert set(state["modules"]) == {"dinov2", "heads"}


def test_searaft_stage_loss_and_epe_fall(searaft_run):
    log = read_log(searaft_run / "searaft" / "log.jsonl")
    assert_falls([r["loss"] for r in log], 0.5)
    assert np.mean([r["epe"] for r in log[-3:]]) < log[0]["epe"]


def test_dit_resume_equals_uninterrupted_run(vae_run, tmp_path):
    """2 steps + 2 resumed steps (with a data worker process in the first call) == 4 steps."""
    outs = {}
    for name in ("straight", "resumed"):
        outs[name] = tmp_path / name
        shutil.copytree(vae_run / "vae", outs[name] / "vae")
    kw = {"stage": "dit", "size": 16, "frames": 5, "batch": 2, "warmup": 2, **FAST}
    run_stage(StageConfig(out=str(outs["straight"]), steps=4, **kw))
    run_stage(StageConfig(out=str(outs["resumed"]), steps=2, **{**kw, "workers": 1}))
    run_stage(StageConfig(out=str(outs["resumed"]), steps=4, **kw), resume=True)
    a = torch.load(outs["straight"] / "dit" / "state.pt", weights_only=True)
    b = torch.load(outs["resumed"] / "dit" / "state.pt", weights_only=True)
    assert a["step"] == b["step"] == 4
    assert set(a["modules"]) == {"transformer", "ema"}
    for name in ("transformer", "ema"):
        for k, v in a["modules"][name].items():
            assert torch.equal(v, b["modules"][name][k]), f"{name}.{k}"
    la, lb = read_log(outs["straight"] / "dit" / "log.jsonl"), read_log(outs["resumed"] / "dit" / "log.jsonl")
    assert [r["step"] for r in lb] == [1, 2, 3, 4]
    assert [r["loss"] for r in la] == [r["loss"] for r in lb]


def test_minutes_limit_checkpoints_and_existing_folder_is_an_error(tmp_path, capsys):
    args = ["dinov2", "--out", str(tmp_path), "--preset", "tiny", "--batch", "1", "--workers", "0",
            "--no-progress"]
    assert train_main([*args, "--minutes", "0.0001", "--steps", "50"]) == 0
    state = torch.load(tmp_path / "dinov2" / "state.pt", weights_only=True)
    assert state["step"] == 1  # stopped after the first step, and checkpointed
    assert "stopped by --minutes" in capsys.readouterr().out
    assert train_main([*args, "--steps", "2"]) == 2
    assert "already holds a dinov2 stage: pass --resume" in capsys.readouterr().err
    assert train_main([*args, "--steps", "2", "--resume"]) == 0
    assert torch.load(tmp_path / "dinov2" / "state.pt", weights_only=True)["step"] == 2
    assert len(read_log(tmp_path / "dinov2" / "log.jsonl")) == 2
    calls = json.loads((tmp_path / "dinov2" / "summary.json").read_text())["calls"]  # one record per call
    assert [(c["steps"], c["to_step"], c.get("note")) for c in calls] == [(1, 1, None), (1, 2, "--resume")]
    assert calls[0]["minutes_limit"] == 0.0001
    with pytest.raises(SmraboothError, match="nothing to resume"):
        run_stage(StageConfig(stage="searaft", out=str(tmp_path), **FAST), resume=True)
    with pytest.raises(SmraboothError, match="train the VAE first"):
        run_stage(StageConfig(stage="dit", out=str(tmp_path / "novae"), steps=1, **FAST))


def test_assemble_writes_a_bundle_that_loads_and_generates(dit_run, dinov2_run, searaft_run, tmp_path, capsys):
    from smrabooth.cli import main as smrabooth_main
    from smrabooth_sprites.bundle import load_bundle

    bundle = tmp_path / "bundle"
    assert train_main(["assemble", "--out", str(dit_run), "--bundle-out", str(bundle), "--version", "t1"]) == 0
    models = load_bundle(bundle)
    assert models.preset == "tiny"  # from the stages' config
    assert models.info["version"] == "t1" and models.info["training"]["dit"]["calls"][0]["to_step"] == 2
    stats = json.loads((dit_run / "vae" / "latent_stats.json").read_text())
    vae_cfg = models.pipe.vae.config
    np.testing.assert_allclose(vae_cfg.latents_mean, stats["latents_mean"])
    np.testing.assert_allclose(vae_cfg.latents_std, stats["latents_std"])
    training = models.info["training"]
    assert training["vae"]["steps"] == 25 and training["dit"]["steps"] == 2 and training["searaft"]["trained"]
    assert "loss" in training["dinov2"]["final"] and training["dinov2"]["batch"] == 2
    assert training["dit"]["weights"] == "ema"
    ema = torch.load(dit_run / "dit" / "state.pt", weights_only=True)["modules"]["ema"]
    for k, v in models.pipe.transformer.state_dict().items():
        torch.testing.assert_close(v.float(), ema[k].to(torch.bfloat16).float(), msg=k)
    # the trained weights, not the random start (bf16 in the bundle)
    trained = torch.load(dit_run / "searaft" / "state.pt", weights_only=True)["modules"]["searaft"]
    for k, v in models.searaft.state_dict().items():
        if v.is_floating_point():  # (BatchNorm's num_batches_tracked is an integer)
            torch.testing.assert_close(v, trained[k].to(torch.bfloat16).float(), msg=k)
    assert train_main(["assemble", "--out", str(dit_run), "--bundle-out", str(bundle)]) == 2  # exists
    assert "already exists" in capsys.readouterr().err
    video = tmp_path / "v.mp4"
    prompt = "a red striped star moving left on a blue background"
    rc = smrabooth_main(["generate", "--model", str(bundle), "--prompt", prompt, "--frames", "5", "--height", "32",
                         "--width", "32", "--steps", "2", "--dtype", "fp32", "--device", "cpu", "--out", str(video)])
    assert rc == 0 and video.stat().st_size > 0


def test_assemble_needs_every_stage_unless_partial(vae_run, tmp_path):
    from smrabooth_sprites.pretrain import assemble_bundle

    out = tmp_path / "run"
    shutil.copytree(vae_run / "vae", out / "vae")
    with pytest.raises(SmraboothError, match="no trained dit, dinov2, searaft stage"):
        assemble_bundle(out)
    path = assemble_bundle(out, partial=True)
    info = json.loads((path / "sprites.json").read_text())
    assert info["preset"] == "tiny" and info["training"]["dit"] == {"trained": False}


def test_stage_config_errors(tmp_path):
    with pytest.raises(SmraboothError, match="unknown stage"):
        StageConfig(stage="unet", out=str(tmp_path)).resolved()
    with pytest.raises(SmraboothError, match="4k\\+1"):
        StageConfig(stage="vae", out=str(tmp_path), frames=6).resolved()
    with pytest.raises(SmraboothError, match="frame pairs"):
        StageConfig(stage="searaft", out=str(tmp_path), preset="tiny", per_clip=9).resolved()
    with pytest.raises(SmraboothError, match="image-fraction"):
        StageConfig(stage="dit", out=str(tmp_path), image_fraction=1.5).resolved()
    with pytest.raises(SmraboothError, match="sprite-scale"):
        StageConfig(stage="dit", out=str(tmp_path), sprite_scale=0).resolved()
    with pytest.raises(SmraboothError, match="partial-captions"):
        StageConfig(stage="dit", out=str(tmp_path), partial_captions=1.5).resolved()
    from smrabooth_sprites.pretrain.cli import build_parser, stage_config

    args = build_parser().parse_args(["dit", "--out", str(tmp_path), "--image-fraction", "0.3", "--sprite-scale", "2",
                                      "--partial-captions", "0.25"])
    cfg = stage_config(args, "dit").resolved()
    assert (cfg.image_fraction, cfg.stills, cfg.sprite_scale, cfg.partial_captions) == (0.3, 10_000, 2.0, 0.25)


def test_reconstruction_errors_per_frame_equal_the_stock_decode_measured_by_hand():
    from smrabooth_sprites.bundle import build_sprites_models
    from smrabooth_sprites.pretrain.vae import STATS_BASE, reconstruction_errors, vae_item

    vae = build_sprites_models("tiny", seed=3).pipe.vae
    errors = reconstruction_errors(vae, 5, 32, 3, torch.device("cpu"), batch=2)  # two batches: 2 + 1 clips
    items = [vae_item(STATS_BASE + i, 5, 32) for i in range(3)]
    frames = np.stack([i["frames"] for i in items]).astype(np.float64) / 127.5 - 1  # (B, F, H, W, 3)
    masks = np.stack([i["masks"] for i in items])
    x = torch.from_numpy(frames).permute(0, 4, 1, 2, 3).float()
    with torch.no_grad():
        rec = vae.decode(vae.encode(x).latent_dist.mode()).sample.clamp(-1, 1)
    err = np.abs(rec.permute(0, 2, 3, 4, 1).double().numpy() - frames).mean(-1)  # (B, F, H, W)
    sprite = [err[:, f][masks[:, f]].mean() for f in range(5)]
    background = [err[:, f][~masks[:, f]].mean() for f in range(5)]
    np.testing.assert_allclose(errors["sprite"], sprite, atol=2e-4)
    np.testing.assert_allclose(errors["background"], background, atol=2e-4)


def test_latent_stats_over_several_batches_equal_a_direct_computation():
    from smrabooth_sprites.bundle import build_sprites_models
    from smrabooth_sprites.pretrain.common import to_video
    from smrabooth_sprites.pretrain.vae import STATS_BASE, encode_moments, measure_latent_stats, vae_item

    vae = build_sprites_models("tiny").pipe.vae
    stats = measure_latent_stats(vae, 5, 32, 3, torch.device("cpu"), batch=2)  # two batches: 2 + 1 clips
    clips = torch.from_numpy(np.stack([vae_item(STATS_BASE + i, 5, 32)["frames"] for i in range(3)]))
    with torch.no_grad():
        mean, _ = encode_moments(vae, to_video(clips, torch.device("cpu")))
    z = mean.double().transpose(0, 1).reshape(mean.shape[1], -1)
    np.testing.assert_allclose(stats["latents_mean"], z.mean(1).numpy(), atol=2e-6)
    np.testing.assert_allclose(stats["latents_std"], z.std(1, unbiased=False).numpy(), rtol=1e-4, atol=2e-6)


def test_dit_can_start_from_a_bundle(tmp_path):
    from smrabooth_sprites.bundle import build_sprites_models, save_bundle
    from smrabooth_sprites.pretrain.common import load_bundle_weights

    src = build_sprites_models("tiny", seed=5)
    src.info = {"training": {"vae": {"trained": True, "latent_stats_clips": 7}}}
    bundle = save_bundle(src, tmp_path / "b")
    dst = build_sprites_models("tiny", seed=0).pipe.transformer
    load_bundle_weights(dst, bundle, "transformer")
    for k, v in src.pipe.transformer.state_dict().items():
        torch.testing.assert_close(dst.state_dict()[k], v.to(torch.bfloat16).float())
    # a dit stage with no vae stage of its own continues from the bundle alone (its VAE and DiT)
    out = tmp_path / "run"
    run_stage(StageConfig(stage="dit", out=str(out), init_from=str(bundle), size=16, frames=5, batch=2, steps=1,
                          ema=0.0, **FAST))
    assert read_log(out / "dit" / "log.jsonl")[0]["step"] == 1
    # assemble takes the parts it has no stage for from that bundle: a whole bundle, the new DiT in it
    from smrabooth_sprites.bundle import load_bundle
    from smrabooth_sprites.pretrain import assemble_bundle

    new = load_bundle(assemble_bundle(out, preset="tiny"))
    for part in ("dinov2", "searaft"):
        for k, v in getattr(src, part).state_dict().items():
            if v.is_floating_point():
                torch.testing.assert_close(getattr(new, part).state_dict()[k].float(), v.to(torch.bfloat16).float())
    assert list(new.pipe.vae.config.latents_mean) == list(src.pipe.vae.config.latents_mean)
    state = torch.load(out / "dit" / "state.pt", weights_only=True)["modules"]["transformer"]
    for k, v in state.items():
        torch.testing.assert_close(new.pipe.transformer.state_dict()[k], v.to(torch.bfloat16).float())
    assert new.info["training"]["dit"]["init_from"] == str(bundle)
    # the base VAE's record travels with it, how many clips its latent statistics came from included
    assert new.info["training"]["vae"] == {"trained": True, "latent_stats_clips": 7, "from_bundle": str(bundle)}


def test_dit_latent_pool_resumes_exactly_and_holds_the_encoded_clips(vae_run, tmp_path, monkeypatch):
    """--pool: latents of clips 0..n-1 encoded once and kept for the next call; 2 + 2 resumed steps == 4
    steps; each pass a new order."""
    from smrabooth.models.vae_decode import normalize_latents
    from smrabooth_sprites.pretrain.common import STREAM_BASE, to_video
    from smrabooth_sprites.pretrain.dit import LatentPool, dit_item
    from smrabooth_sprites.pretrain.vae import encode_moments, load_trained_vae

    outs = {}
    for name in ("straight", "resumed"):
        outs[name] = tmp_path / name
        shutil.copytree(vae_run / "vae", outs[name] / "vae")
    kw = {"stage": "dit", "size": 16, "frames": 5, "batch": 2, "warmup": 2, "pool": 3, **FAST}
    run_stage(StageConfig(out=str(outs["straight"]), steps=4, **kw))
    run_stage(StageConfig(out=str(outs["resumed"]), steps=2, **kw))
    run_stage(StageConfig(out=str(outs["resumed"]), steps=4, **kw), resume=True)
    a = torch.load(outs["straight"] / "dit" / "state.pt", weights_only=True)
    b = torch.load(outs["resumed"] / "dit" / "state.pt", weights_only=True)
    for k, v in a["modules"]["transformer"].items():
        assert torch.equal(v, b["modules"]["transformer"][k]), k

    cfg = StageConfig(out=str(outs["straight"]), **kw).resolved()
    cfg.size, cfg.frames = 16, 5
    vae = load_trained_vae(outs["straight"], "tiny", torch.device("cpu"))
    pipe = type("P", (), {"vae": vae})()
    pool = LatentPool(pipe, cfg, torch.device("cpu"), workers=0, batch=2)
    clips = torch.from_numpy(np.stack([dit_item(STREAM_BASE["dit"] + i, 5, 16)["frames"] for i in range(3)]))
    with torch.no_grad():
        mean, _ = encode_moments(vae, to_video(clips, torch.device("cpu")))
    torch.testing.assert_close(pool.latents.float(), normalize_latents(vae, mean).half().float())
    first_pass = sorted(pool.order(i) for i in range(3))
    assert first_pass == [0, 1, 2]  # every clip once per pass
    z, captions, cells = pool.batch([STREAM_BASE["dit"] + 0, STREAM_BASE["dit"] + 1])
    assert z.shape[0] == 2 and captions[0] == pool.captions[pool.order(0)]
    assert cells.shape == (2, 1, *z.shape[2:])

    # kept pools: the resumed call above loaded the pool the first call kept, and gave the same weights;
    # a pool is loaded only for the same clips and the same VAE
    from smrabooth_sprites.pretrain import dit

    kept = sorted(p.name for p in (outs["resumed"] / "dit").glob("pool-*.pt"))
    assert len(kept) == 1 and kept[0] == dit.pool_file(outs["resumed"] / "dit", cfg, vae, False, False).name
    monkeypatch.setattr(dit, "clip_stream", lambda *a, **k: pytest.fail("rendered a kept pool again"))
    again = LatentPool(pipe, cfg, torch.device("cpu"), workers=0, batch=2, cache=outs["resumed"] / "dit")
    assert torch.equal(again.latents, pool.latents) and torch.equal(again.cells, pool.cells)
    assert again.captions == pool.captions
    other = dit.pool_file(outs["resumed"] / "dit", dataclasses.replace(cfg, sprite_scale=2.0), vae, False, False)
    with torch.no_grad():
        next(vae.parameters()).add_(1e-3)
    moved = dit.pool_file(outs["resumed"] / "dit", cfg, vae, False, False)
    assert len({other, moved, outs["resumed"] / "dit" / kept[0]}) == 3


def test_latent_mask_and_sprite_weighted_loss():
    from smrabooth_sprites.pretrain.common import latent_mask
    from smrabooth_sprites.pretrain.dit import weighted_flow_loss

    masks = torch.zeros(1, 9, 32, 32, dtype=torch.bool)
    masks[0, 0, 0, 0] = True  # frame 0 -> latent 0, cell (0, 0)
    masks[0, 6, 17, 30] = True  # frame 6 -> latent 2 (frames 5..8), cell (2, 3)
    cells = latent_mask(masks)
    assert cells.shape == (1, 1, 3, 4, 4)
    expected = torch.zeros(1, 1, 3, 4, 4)
    expected[0, 0, 0, 0, 0] = 1
    expected[0, 0, 2, 2, 3] = 1
    assert torch.equal(cells, expected)

    g = torch.Generator().manual_seed(0)
    u, target = torch.randn(1, 16, 3, 4, 4, generator=g), torch.randn(1, 16, 3, 4, 4, generator=g)
    assert torch.equal(weighted_flow_loss(u, target, None), ((u - target) ** 2).mean())
    w = 1.0 + 9.0 * cells
    err = ((u - target) ** 2).mean(1)  # per cell, mean over channels
    by_hand = (err[0, 0, 0, 0] * 10 + err[0, 2, 2, 3] * 10 + err.sum() - err[0, 0, 0, 0] - err[0, 2, 2, 3]) / (48 + 18)
    torch.testing.assert_close(weighted_flow_loss(u, target, w), by_hand)


def test_pixel_region_marks_the_cells_of_each_latent_frame_on_every_frame_it_covers():
    from smrabooth_sprites.pretrain.common import pixel_region

    masks = torch.zeros(1, 9, 32, 32, dtype=torch.bool)
    masks[0, 0, 0, 0] = True  # frame 0 -> latent 0, cell (0, 0)
    masks[0, 6, 17, 30] = True  # frame 6 -> latent 2 (frames 5..8), cell (2, 3)
    region = pixel_region(masks)
    expected = torch.zeros(1, 1, 9, 32, 32)
    expected[0, 0, 0, :8, :8] = 1
    expected[0, 0, 5:9, 16:24, 24:32] = 1  # the whole cell, on all four frames of latent 2, not only frame 6
    assert torch.equal(region, expected)


def test_vae_stage_starts_from_a_bundle_and_weights_the_sprite_region(tmp_path, monkeypatch):
    from smrabooth_sprites.bundle import build_sprites_models, save_bundle
    from smrabooth_sprites.pretrain import common

    src = build_sprites_models("tiny", seed=5)
    bundle = save_bundle(src, tmp_path / "b")
    seen = []
    real = common.weighted_mean
    monkeypatch.setattr("smrabooth_sprites.pretrain.vae.weighted_mean",
                        lambda err, weight: seen.append(weight) or real(err, weight))
    out = tmp_path / "run"
    run_stage(StageConfig(stage="vae", out=str(out), init_from=str(bundle), size=32, frames=5, batch=2, steps=1,
                          lr=1e-12, warmup=0, sprite_weight=9.0, stats_clips=2, **FAST))
    # lr ~0: the saved weights are the bundle's (bf16 there), so the stage really started from it
    state = torch.load(out / "vae" / "state.pt", weights_only=True)["modules"]["vae"]
    for k, v in src.pipe.vae.state_dict().items():
        torch.testing.assert_close(state[k], v.to(torch.bfloat16).float(), atol=1e-6, rtol=0)
    weight = seen[0]
    assert set(weight.unique().tolist()) == {1.0, 10.0} and weight.shape[2:] == (5, 32, 32)
    assert 0 < float((weight > 1).float().mean()) < 0.9
    # the bundle records where the VAE came from and how it was trained
    from smrabooth_sprites.pretrain import assemble_bundle

    info = json.loads((assemble_bundle(out, preset="tiny", base=bundle) / "sprites.json").read_text())["training"]
    assert info["vae"]["init_from"] == str(bundle) and info["vae"]["settings"]["sprite_weight"] == 9.0
    assert info["vae"]["settings"]["frames"] == 5 and info["dit"]["from_bundle"] == str(bundle)


def test_dit_stage_runs_with_sprite_weight_rendered_and_pooled(vae_run, tmp_path):
    for pool in (0, 2):
        out = tmp_path / f"pool{pool}"
        shutil.copytree(vae_run / "vae", out / "vae")
        run_stage(StageConfig(stage="dit", out=str(out), size=16, frames=5, batch=2, steps=2, sprite_weight=4.0,
                              pool=pool, sprite_scale=2.0 if pool else 1.0, partial_captions=0.5 if pool else 0.0,
                              **FAST))
        assert [r["step"] for r in read_log(out / "dit" / "log.jsonl")] == [1, 2]
        assert json.loads((out / "dit" / "config.json").read_text())["partial_captions"] == (0.5 if pool else 0.0)
    # what the pool and the loop read: the world's clip of that seed, with the partial caption
    from smrabooth_sprites.pretrain.common import STREAM_BASE
    from smrabooth_sprites.pretrain.dit import clip_stream
    from smrabooth_sprites.world import sample_clip

    cfg = StageConfig(stage="dit", out=str(tmp_path), size=16, frames=5, sprite_scale=2.0, partial_captions=1.0,
                      preset="tiny").resolved()
    item, clip = clip_stream(cfg)[3], sample_clip(STREAM_BASE["dit"] + 3, frames=5, size=16, sprite_scale=2.0)
    assert np.array_equal(item["frames"], clip.frames)
    assert item["caption"] == f"a {clip.design.shape} on {'an' if clip.background[0] in 'aeiou' else 'a'} " \
        f"{clip.background} background"


def test_dit_stills_are_one_frame_encodes_and_a_share_of_steps_resumes_exactly(vae_run, tmp_path, monkeypatch):
    """--image-fraction: the stills pool holds the one-frame latents of stills 0..n-1 (as the subject
    trainer encodes images); about that share of steps draws from it, and 2 + 2 resumed steps == 4 steps."""
    from smrabooth.models.vae_decode import normalize_latents
    from smrabooth_sprites.pretrain.common import STILLS_BASE, to_video
    from smrabooth_sprites.pretrain.dit import LatentPool, still_item
    from smrabooth_sprites.pretrain.vae import encode_moments, load_trained_vae

    cpu = torch.device("cpu")
    kw = {"stage": "dit", "size": 16, "frames": 5, "batch": 2, "warmup": 2, "image_fraction": 0.5, "stills": 3, **FAST}
    cfg = StageConfig(out=str(vae_run), **kw).resolved()
    vae = load_trained_vae(vae_run, "tiny", cpu)
    stills = LatentPool(type("P", (), {"vae": vae})(), cfg, cpu, workers=0, batch=2, stills=True)
    items = [still_item(STILLS_BASE + i, 16) for i in range(3)]
    with torch.no_grad():
        mean, _ = encode_moments(vae, to_video(torch.from_numpy(np.stack([i["frames"] for i in items])), cpu))
    assert mean.shape[2] == 1
    torch.testing.assert_close(stills.latents.float(), normalize_latents(vae, mean).half().float())
    assert stills.captions == [i["caption"] for i in items] and items[0]["caption"].startswith("a picture of ")

    drawn = []
    sample = LatentPool.sample
    monkeypatch.setattr(LatentPool, "sample", lambda self, b, gen: drawn.append(b) or sample(self, b, gen))
    outs = {}
    for name in ("straight", "resumed"):
        outs[name] = tmp_path / name
        shutil.copytree(vae_run / "vae", outs[name] / "vae")
    run_stage(StageConfig(out=str(outs["straight"]), steps=4, **kw))
    straight = len(drawn)
    run_stage(StageConfig(out=str(outs["resumed"]), steps=2, **kw))
    run_stage(StageConfig(out=str(outs["resumed"]), steps=4, **kw), resume=True)
    assert straight > 0 and len(drawn) == 2 * straight  # the resumed run drew stills on the same steps
    a = torch.load(outs["straight"] / "dit" / "state.pt", weights_only=True)
    b = torch.load(outs["resumed"] / "dit" / "state.pt", weights_only=True)
    for k, v in a["modules"]["transformer"].items():
        assert torch.equal(v, b["modules"]["transformer"][k]), k

    for fraction, expected in ((1.0, 3), (0.0, 0)):  # every step with --image-fraction 1, none without stills
        drawn.clear()
        out = tmp_path / f"fraction{fraction}"
        shutil.copytree(vae_run / "vae", out / "vae")
        run_stage(StageConfig(out=str(out), steps=3, **{**kw, "image_fraction": fraction, "stills": 0}))
        assert len(drawn) == expected


MULTI = {"stage": "dit", "size": 16, "frames": 5, "batch": 4, "pool": 4, "image_fraction": 0.5, "stills": 3,
         "sprite_weight": 4.0, "partial_captions": 0.5, "lr": 1e-3, "warmup": 0, "ema": 0.9, **FAST}


def torchrun(tmp_path, name: str, processes: int, **overrides) -> None:
    """The dit stage under torchrun (gloo on the CPU), as on a multi-GPU machine."""
    import subprocess
    import sys

    script = tmp_path / f"{name}.py"
    script.write_text("import torch\ntorch.set_num_threads(1)\n"
                      "from smrabooth_sprites.pretrain import StageConfig, run_stage\n"
                      f"run_stage(StageConfig(**{ {**MULTI, **overrides}!r}))\n")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}", str(script)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def test_dit_stage_on_two_processes_is_the_one_process_run_and_resumes_on_one(vae_run, tmp_path):
    """torchrun: two processes, each on its half of every batch with averaged gradients, give the one-process
    run of the same batch (same losses from the first step, same weights and EMA after 3 steps), and a
    state.pt they wrote resumes in one process."""
    ref, two = tmp_path / "one", tmp_path / "two"
    for out in (ref, two):
        shutil.copytree(vae_run / "vae", out / "vae")
    run_stage(StageConfig(out=str(ref), steps=3, **MULTI))
    torchrun(tmp_path, "two", 2, out=str(two), steps=2)
    assert [r["step"] for r in read_log(two / "dit" / "log.jsonl")] == [1, 2]
    run_stage(StageConfig(out=str(two), steps=3, **MULTI), resume=True)

    a, b = read_log(ref / "dit" / "log.jsonl"), read_log(two / "dit" / "log.jsonl")
    assert [r["step"] for r in b] == [1, 2, 3]
    calls = json.loads((two / "dit" / "summary.json").read_text())["calls"]
    assert [c.get("processes", 1) for c in calls] == [2, 1]
    np.testing.assert_allclose([r["flow"] for r in b], [r["flow"] for r in a], rtol=1e-5)
    sa = torch.load(ref / "dit" / "state.pt", weights_only=True)
    sb = torch.load(two / "dit" / "state.pt", weights_only=True)
    assert sa["step"] == sb["step"] == 3
    # Adam's first steps move every weight by about lr whatever its gradient's size, so a weight whose
    # gradient is ~0 may move either way by float noise: compare the whole update, not each weight
    from smrabooth_sprites.bundle import build_sprites_models

    start = build_sprites_models("tiny", 0).pipe.transformer.state_dict()
    for module in ("transformer", "ema"):
        update = torch.cat([(sa["modules"][module][k] - v).flatten() for k, v in start.items()])
        apart = torch.cat([(sb["modules"][module][k] - sa["modules"][module][k]).flatten() for k in start])
        assert float(update.norm()) > 0.01 and float(apart.norm()) < 0.01 * float(update.norm())


def test_multi_process_runs_are_refused_where_they_cannot_split(vae_run, tmp_path, monkeypatch):
    from smrabooth_sprites.pretrain.distributed import Shard, check, start

    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(SmraboothError, match="only the dit stage"):
        start(StageConfig(stage="vae", out=str(tmp_path)))
    with pytest.raises(SmraboothError, match="--pool"):
        check(StageConfig(out=str(tmp_path), **{**MULTI, "pool": 0}).resolved(), Shard(0, 2))
    with pytest.raises(SmraboothError, match="multiple of 3"):
        check(StageConfig(out=str(tmp_path), **MULTI).resolved(), Shard(0, 3))
    assert [Shard(r, 2).part(6) for r in (0, 1)] == [slice(0, 3), slice(3, 6)]


def test_two_processes_stop_together_at_the_time_limit(vae_run, tmp_path):
    """--minutes under torchrun: each process reads its own clock, so they agree every STOP_CHECK_STEPS
    steps (a process stopping alone would leave the other waiting in its all-reduce forever)."""
    from smrabooth_sprites.pretrain.common import STOP_CHECK_STEPS

    shutil.copytree(vae_run / "vae", tmp_path / "run" / "vae")
    torchrun(tmp_path, "late", 2, out=str(tmp_path / "run"), steps=STOP_CHECK_STEPS + 5, minutes=1e-4)
    assert [r["step"] for r in read_log(tmp_path / "run" / "dit" / "log.jsonl")][-1] == STOP_CHECK_STEPS


def test_vae_decoder_only_keeps_the_encoder_and_the_latent_statistics(tmp_path):
    """--decoder-only: the decoder trains, the encoder (the DiT's latent space) and the bundle's latent
    statistics stay exactly as they were; it needs a bundle to start from."""
    from smrabooth_sprites.bundle import build_sprites_models, save_bundle

    src = build_sprites_models("tiny", seed=5)
    src.pipe.vae.register_to_config(latents_mean=[0.5] * 16, latents_std=[2.0] * 16)
    bundle = save_bundle(src, tmp_path / "b")
    out = tmp_path / "run"
    run_stage(StageConfig(stage="vae", out=str(out), init_from=str(bundle), decoder_only=True, size=32, frames=5,
                          batch=2, steps=3, lr=1e-3, warmup=0, sprite_weight=4.0, sprite_scale=2.0, **FAST))
    state = torch.load(out / "vae" / "state.pt", weights_only=True)["modules"]["vae"]
    start = {k: v.to(torch.bfloat16).float() for k, v in src.pipe.vae.state_dict().items()}
    frozen = [k for k in state if k.startswith(("encoder.", "quant_conv."))]
    trained = [k for k in state if k.startswith(("decoder.", "post_quant_conv."))]
    assert frozen and trained
    assert all(torch.equal(state[k], start[k]) for k in frozen)
    assert sum(not torch.equal(state[k], start[k]) for k in trained) > len(trained) // 2
    stats = json.loads((out / "vae" / "latent_stats.json").read_text())
    assert stats["latents_mean"] == [0.5] * 16 and stats["latents_std"] == [2.0] * 16
    with pytest.raises(SmraboothError, match="--decoder-only"):
        StageConfig(stage="vae", out=str(tmp_path / "x"), decoder_only=True, **FAST).resolved()
