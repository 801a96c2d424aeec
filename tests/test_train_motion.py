"""Motion LoRA training with MoRA on the tiny Wan model and a tiny SEA-RAFT."""

import json
import time

import numpy as np
import pytest
import torch

from smrabooth.data.motion import MotionExample, load_motion_frames
from smrabooth.errors import SmraboothError
from smrabooth.lora.files import load_lora
from smrabooth.models.searaft import SEARAFT, SEARAFT_TINY, compute_flow
from smrabooth.train.common import read_log
from smrabooth.train.motion import MotionTrainConfig, motion_losses, train_motion
from smrabooth.video import write_video

H, W, FRAMES = 128, 144, 17  # SEA-RAFT needs >= 128 px; 5 latent frames; MoRA window of 3 latents (9 decoded, 1 dropped)


def square_clip(n: int, h: int = 72, w: int = 96, step: int = 3, numbered: bool = False) -> np.ndarray:
    """A white square moving right over a dark background; with `numbered`, frame k is filled with
    grey level 10*k (so tests can read back which source frame was taken)."""
    frames = np.zeros((n, h, w, 3), np.uint8)
    frames[..., 2] = 60
    for k in range(n):
        if numbered:
            frames[k] = 10 * k
            continue
        x = 8 + step * k
        frames[k, h // 3 : h // 3 + 16, x : x + 16] = 255
    return frames


def make_motion_folder(root, n_frames=20, fps=15, numbered=False):
    root.mkdir(parents=True)
    write_video(square_clip(n_frames, numbered=numbered), root / "clip_0.mp4", fps=fps)
    (root / "metadata.csv").write_text("file_name,text\nclip_0.mp4,a ball S* sliding right\n")
    return root


@pytest.fixture
def motion_dir(tmp_path):
    return make_motion_folder(tmp_path / "motion")


def tiny_flow_model(seed=0):
    """Tiny SEA-RAFT with all weights random (test_searaft.randomise): default BatchNorm/layer-scale
    init would make its flow nearly independent of the frames."""
    from test_searaft import randomise

    return randomise(SEARAFT(SEARAFT_TINY), seed)


def config(tmp_path, **kw):
    base = dict(model="tiny", data=str(tmp_path / "motion"), out=str(tmp_path / "run"), steps=4, rank=4, alpha=4,
                lr=1e-3, frames=FRAMES, height=H, width=W, fps=15, window=3, window_stride=1, drop_frames=1,
                gradient_checkpointing=False, checkpoint_every=2, save_dtype="fp32",
                cache_dir=str(tmp_path / "cache"), seed=0)
    recipe = kw.pop("recipe", "paper")  # the official recipe's own tests: tests/test_official_recipe.py
    base.update(kw)
    return MotionTrainConfig.from_recipe(recipe, **base)


def train(tmp_path, pipe=None, flow_model=None, resume=False, **kw):
    from smrabooth.models.tiny import build_tiny_wan_pipeline

    pipe = pipe or build_tiny_wan_pipeline()
    cfg = config(tmp_path, **kw)
    return pipe, train_motion(cfg, pipe, flow_model or tiny_flow_model(), model_id="tiny", resume=resume,
                              progress=False)


# ---------------------------------------------------------------- data
def test_frames_are_resampled_cropped_and_looped(tmp_path):
    """Frame k of the source shows grey 10k: read back which source frames were taken."""
    src = tmp_path / "numbered.mp4"
    write_video(square_clip(12, numbered=True), src, fps=30)
    frames = load_motion_frames(src, 5, fps=15, height=32, width=32)  # every 2nd frame of a 30 fps clip
    assert frames.shape == (5, 3, 32, 32)
    levels = (frames.mean(dim=(1, 2, 3)) * 255 / 10).round().tolist()
    assert levels == [0, 2, 4, 6, 8]
    with pytest.raises(SmraboothError, match=r"0\.40 s long.*--loop"):
        load_motion_frames(src, 9, fps=15, height=32, width=32)
    looped = load_motion_frames(src, 9, fps=15, height=32, width=32, loop=True)
    assert (looped.mean(dim=(1, 2, 3)) * 255 / 10).round().tolist() == [0, 2, 4, 6, 8, 10, 0, 2, 4]
    with pytest.raises(SmraboothError, match="4k\\+1"):
        load_motion_frames(src, 8, fps=15, height=32, width=32)


def test_official_takes_a_16_fps_clips_first_frames_as_they_are(tmp_path):
    """The authors' clips: 49 frames at 16 fps (3.06 s). `official` (clip_timing first) takes frames 0..48 as they
    are; resampling to 15 fps would need 3.27 s and stops. A shorter clip is a one-line error naming the count."""
    from smrabooth.recipes import OFFICIAL, PAPER

    numbered = np.repeat(4 * np.arange(49, dtype=np.uint8)[:, None, None, None], 16, 1).repeat(16, 2).repeat(3, 3)
    write_video(numbered, tmp_path / "16fps.mp4", fps=16)
    m = OFFICIAL.motion
    frames = load_motion_frames(tmp_path / "16fps.mp4", 49, m.fps, 16, 16, timing=m.clip_timing,
                                resize_filter=m.resize_filter)
    assert (frames.mean(dim=(1, 2, 3)) * 255 / 4).round().int().tolist() == list(range(49))
    with pytest.raises(SmraboothError, match=r"3\.06 s long: 49 frames at 15 fps need 3\.27 s"):
        load_motion_frames(tmp_path / "16fps.mp4", 49, PAPER.motion.fps, 16, 16, timing=PAPER.motion.clip_timing)
    with pytest.raises(SmraboothError, match=r"has 49 frames: --frames 53 takes the first 53") as e:
        load_motion_frames(tmp_path / "16fps.mp4", 53, m.fps, 16, 16, timing="first")
    assert "\n" not in str(e.value)


def test_cover_crop_keeps_aspect(tmp_path):
    """A 96x72 clip to 64x32: scaled by 2/3 to 64x48, centre 32 rows kept (no stretching)."""
    clip = np.zeros((5, 72, 96, 3), np.uint8)
    clip[:, :36] = 255  # top half white
    write_video(clip, tmp_path / "c.mp4", fps=15)
    frames = load_motion_frames(tmp_path / "c.mp4", 5, fps=15, height=32, width=64)
    rows = frames[0, 0, :, 32].numpy()
    assert rows.shape == (32,)
    # the white/black edge (row 24 of 48) sits at row 24 - 8 = 16 of the crop
    assert rows[:14].min() > 0.9 and rows[19:].max() < 0.1


# ---------------------------------------------------------------- the loss
def _example_and_embeds(pipe, motion_dir, flow_model, cfg):
    from smrabooth.align.mora import reference_flows
    from smrabooth.data.motion import encode_video_latent

    frames = load_motion_frames(motion_dir / "clip_0.mp4", cfg.frames, cfg.fps, cfg.height, cfg.width)
    flows = reference_flows(frames, lambda a, b: compute_flow(flow_model, a, b))
    emb, _ = pipe.encode_prompt("a ball S* sliding right", do_classifier_free_guidance=False, device="cpu")
    return MotionExample(encode_video_latent(pipe.vae, frames), flows, "x"), emb


def test_mora_gradient_reaches_only_the_lora_through_decoder_and_flow(tmp_path, motion_dir):
    from smrabooth.models.tiny import build_tiny_wan_pipeline
    from smrabooth.train.common import add_lora_adapter

    pipe, flow_model = build_tiny_wan_pipeline(), tiny_flow_model()
    cfg = config(tmp_path).validate()
    ex, emb = _example_and_embeds(pipe, motion_dir, flow_model, cfg)
    add_lora_adapter(pipe.transformer, "motion", 4, 4, cfg.layer_types)
    for n, p in pipe.transformer.named_parameters():  # B = 0 at init would hide A's gradient
        if "lora_B" in n:
            p.data.normal_(0, 0.1)
    pipe.vae.requires_grad_(False)
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(ex.latent.shape, generator=g)[None]
    losses = motion_losses(cfg, pipe.transformer, pipe.vae, lambda a, b: compute_flow(flow_model, a, b), ex, emb,
                           torch.tensor([0.5]), noise, start=1)
    assert set(losses) == {"flow", "mora", "loss"}
    assert torch.allclose(losses["loss"], losses["flow"] + losses["mora"])
    losses["mora"].backward()
    grads = {n: p.grad for n, p in pipe.transformer.named_parameters()}
    lora = [g for n, g in grads.items() if "lora_" in n]
    assert lora and all(g is not None for g in lora) and sum(float(g.abs().sum()) for g in lora) > 0
    assert all(g is None for n, g in grads.items() if "lora_" not in n)
    assert all(p.grad is None for p in pipe.vae.parameters())
    assert all(p.grad is None for p in flow_model.parameters())


def test_mora_term_with_an_exact_velocity_is_the_clean_latents_mora(tmp_path, motion_dir):
    """A transformer that predicts the exact velocity noise - z0 gives flow loss 0 and z0_hat = z0, so the
    MoRA term must equal MoRA computed directly on the clean latent's window (another route through
    decode_window/window_ref_flows, at the same start)."""
    from smrabooth.align.mora import decode_window, mora_loss, window_ref_flows
    from smrabooth.models.tiny import build_tiny_wan_pipeline

    pipe, flow_model = build_tiny_wan_pipeline(), tiny_flow_model()
    cfg = config(tmp_path).validate()
    ex, emb = _example_and_embeds(pipe, motion_dir, flow_model, cfg)
    flow_fn = lambda a, b: compute_flow(flow_model, a, b)  # noqa: E731
    noise = torch.randn((1, *ex.latent.shape), generator=torch.Generator().manual_seed(1))

    class ExactVelocity:
        dtype = torch.float32

        def __call__(self, z_t, t, embeds, return_dict=False):
            return (noise - ex.latent[None],)

    for start in (0, 2):
        with torch.no_grad():
            losses = motion_losses(cfg, ExactVelocity(), pipe.vae, flow_fn, ex, emb, torch.tensor([0.7]), noise, start)
            direct = mora_loss(decode_window(pipe.vae, ex.latent[None], start, cfg.window, cfg.drop_frames),
                               window_ref_flows(ex.flows, start, cfg.window, cfg.drop_frames), flow_fn)
        assert float(losses["flow"]) < 1e-10
        assert float(losses["mora"]) == pytest.approx(float(direct), rel=1e-4, abs=1e-6)
        assert float(direct) > 0


def test_gradients_reach_only_lora_in_a_training_step(tmp_path, motion_dir, monkeypatch):
    from smrabooth.models.tiny import build_tiny_wan_pipeline
    from smrabooth.train import common

    seen = {}
    original = torch.optim.AdamW.step

    def spy(self, *a, **k):
        if not seen:
            seen["transformer"] = {n: p.grad for n, p in pipe.transformer.named_parameters()}
            seen["frozen"] = [p.grad for p in list(pipe.vae.parameters()) + list(flow_model.parameters())]
            seen["n_opt"] = sum(len(g["params"]) for g in self.param_groups)
        return original(self, *a, **k)

    monkeypatch.setattr(common.torch.optim.AdamW, "step", spy)
    pipe, flow_model = build_tiny_wan_pipeline(), tiny_flow_model()
    train(tmp_path, pipe=pipe, flow_model=flow_model, steps=1)
    lora = {n: g for n, g in seen["transformer"].items() if "lora_" in n}
    assert lora and all(g is not None for g in lora.values())
    assert all(g is None for n, g in seen["transformer"].items() if "lora_" not in n)
    assert all(g is None for g in seen["frozen"])
    assert seen["n_opt"] == len(lora)


# ---------------------------------------------------------------- the run
def test_resume_is_exact_and_windows_cycle(tmp_path, motion_dir):
    _, straight = train(tmp_path, steps=4, out=str(tmp_path / "straight"))
    train(tmp_path, steps=2, out=str(tmp_path / "resumed"))
    _, resumed = train(tmp_path, steps=4, out=str(tmp_path / "resumed"), resume=True)
    a, b = load_lora(straight), load_lora(resumed)
    assert all(torch.equal(a.tensors[k], b.tensors[k]) for k in a.tensors)
    log = read_log(tmp_path / "resumed" / "log.jsonl")
    assert [r["step"] for r in log] == [1, 2, 3, 4]
    assert [r["mora"] for r in log] == [r["mora"] for r in read_log(tmp_path / "straight" / "log.jsonl")]
    assert a.info["kind"] == "motion" and a.rank == 4


def test_no_mora_is_the_flow_loss_alone(tmp_path, motion_dir):
    _, a = train(tmp_path, use_mora=False, out=str(tmp_path / "a"))
    _, b = train(tmp_path, mora_weight=0.0, out=str(tmp_path / "b"))
    la, lb = load_lora(a), load_lora(b)
    assert all(torch.equal(la.tensors[k], lb.tensors[k]) for k in la.tensors)
    log_a, log_b = read_log(tmp_path / "a" / "log.jsonl"), read_log(tmp_path / "b" / "log.jsonl")
    assert "mora" not in log_a[0] and "mora" in log_b[0]
    assert [r["flow"] for r in log_a] == [r["flow"] for r in log_b]
    _, c = train(tmp_path, mora_weight=1.0, out=str(tmp_path / "c"))
    assert not all(torch.equal(la.tensors[k], load_lora(c).tensors[k]) for k in la.tensors)
    # --no-mora needs no flow model
    from smrabooth.models.tiny import build_tiny_wan_pipeline

    train_motion(config(tmp_path, use_mora=False, out=str(tmp_path / "d")), build_tiny_wan_pipeline(), None,
                 model_id="tiny", progress=False)


def test_training_learns_the_motion(tmp_path, motion_dir):
    """On fixed (sigma, noise, window) probes: training lowers the flow loss, and MoRA training lowers the
    MoRA loss of the one-step estimate where training without it does not."""
    from smrabooth.models.tiny import build_tiny_wan_pipeline
    from smrabooth.sampling import GenerateConfig, attach_loras

    flow_model = tiny_flow_model()
    cfg = config(tmp_path).validate()
    base = build_tiny_wan_pipeline()
    ex, emb = _example_and_embeds(base, motion_dir, flow_model, cfg)
    flow_fn = lambda a, b: compute_flow(flow_model, a, b)  # noqa: E731
    g = torch.Generator().manual_seed(7)
    probes = [(torch.tensor([s]), torch.randn(ex.latent.shape, generator=g)[None]) for s in (0.3, 0.5, 0.7)]

    def probe(transformer):
        with torch.no_grad():
            out = [motion_losses(cfg, transformer, base.vae, flow_fn, ex, emb, s, n, start=st)
                   for (s, n), st in zip(probes, (0, 1, 2))]
        return {k: float(np.mean([float(o[k]) for o in out])) for k in ("flow", "mora")}

    before = probe(base.transformer)
    results = {}
    for use_mora in (True, False):
        run = tmp_path / f"run-{use_mora}"
        lora = train_motion(config(tmp_path, out=str(run), steps=30, rank=8, alpha=8, lr=5e-3, use_mora=use_mora,
                                   mora_weight=20.0, checkpoint_every=100),
                            build_tiny_wan_pipeline(), flow_model, model_id="tiny", progress=False)
        fresh = build_tiny_wan_pipeline()
        attach_loras(fresh, GenerateConfig(injection="dense"), None, load_lora(lora))
        results[use_mora] = probe(fresh.transformer)
    # measured (CPU, torch 2.13): flow 1.48 -> 1.10 without MoRA, 1.41 with; MoRA 9.30 -> 9.29 without, 9.20 with
    assert results[False]["flow"] < 0.9 * before["flow"] and results[True]["flow"] < before["flow"]
    assert results[True]["mora"] < results[False]["mora"] < before["mora"] + 0.01
    assert results[True]["mora"] < before["mora"] - 0.05


def test_cache_is_reused(tmp_path, motion_dir, monkeypatch):
    from smrabooth.models.tiny import build_tiny_wan_pipeline

    train(tmp_path, steps=1, out=str(tmp_path / "a"))
    pipe, flow_model = build_tiny_wan_pipeline(), tiny_flow_model()
    monkeypatch.setattr(pipe.vae, "encode", lambda *a, **k: pytest.fail("VAE ran although latents were cached"))
    calls = {"n": 0}
    original = flow_model.forward

    def counting(*a, **k):
        calls["n"] += 1
        return original(*a, **k)

    monkeypatch.setattr(flow_model, "forward", counting)
    train(tmp_path, pipe=pipe, flow_model=flow_model, steps=1, out=str(tmp_path / "b"))
    assert len(list((tmp_path / "cache").glob("*.safetensors"))) == 2  # one clip, one caption
    assert calls["n"] == 1  # SEA-RAFT ran for the training step's window only, not for the reference


def test_decode_settings_reach_the_mora_decode(tmp_path, motion_dir, monkeypatch):
    from smrabooth.backbones.wan21 import Wan21  # the trainer decodes through the backbone's window decode

    seen, decode = [], Wan21.decode_window
    monkeypatch.setattr(Wan21, "decode_window", lambda self, *a, **k: seen.append(k) or decode(self, *a, **k))
    train(tmp_path, steps=1, vae_checkpointing="frame", vae_store_frames=2, mora_frame_range="authors",
          mora_decode="tiled")
    assert seen == [{"checkpoint": "frame", "store_last": 2, "frame_range": "authors", "tiling": "tiled"}]


def test_bad_input(tmp_path, motion_dir):
    with pytest.raises(SmraboothError, match="4k\\+1"):
        train(tmp_path, frames=16)
    with pytest.raises(SmraboothError, match="fewer than the MoRA window"):
        train(tmp_path, frames=9, window=6)
    with pytest.raises(SmraboothError, match="--vae-store-frames"):
        train(tmp_path, vae_store_frames=-1)
    with pytest.raises(SmraboothError, match="needs a SEA-RAFT"):
        train_motion(config(tmp_path), __import__("smrabooth.models.tiny", fromlist=["x"]).build_tiny_wan_pipeline(),
                     None, model_id="tiny", progress=False)
    short = make_motion_folder(tmp_path / "short", n_frames=10)
    with pytest.raises(SmraboothError, match="clip_0.mp4 is 0.67 s long.*--loop"):
        train(tmp_path, data=str(short), out=str(tmp_path / "s"))
    train(tmp_path, data=str(short), out=str(tmp_path / "s2"), loop=True, steps=1)
    (motion_dir / "metadata.csv").write_text("file_name,text\nmissing.mp4,a ball S* sliding\n")
    with pytest.raises(SmraboothError, match="missing.mp4"):
        train(tmp_path, out=str(tmp_path / "m"))


def test_train_motion_cli_then_generate(tiny_model_dir, tmp_path, motion_dir):
    from smrabooth.cli import main
    from smrabooth.models.searaft import save_searaft

    save_searaft(tiny_flow_model(), tmp_path / "searaft")
    argv = ["train-motion", "--model", str(tiny_model_dir), "--data", str(motion_dir), "--flow-model",
            str(tmp_path / "searaft"), "--out", str(tmp_path / "run"), "--steps", "2", "--rank", "4", "--alpha", "4",
            "--frames", "17", "--height", "128", "--width", "144", "--window", "3", "--window-stride", "1",
            "--drop-frames", "1", "--dtype", "fp32", "--cache-dir", str(tmp_path / "cache"), "--quiet",
            "--validate-every", "2", "--validation-prompt", "a dog S* sliding right"]
    t0 = time.perf_counter()
    assert main(argv) == 0
    times = json.loads((tmp_path / "run" / "timings.json").read_text())
    assert list(times) == ["captions", "precompute", "setup", "loop", "save", "total"]
    assert times["loop"] > 0 and times["total"] <= time.perf_counter() - t0
    lora = tmp_path / "run" / "motion_lora.safetensors"
    assert lora.is_file() and (tmp_path / "run" / "validation" / "step-2.mp4").is_file()
    assert main(["generate", "--model", str(tiny_model_dir), "--prompt", "a dog S* sliding right", "--motion-lora",
                 str(lora), "--frames", "9", "--height", "32", "--width", "32", "--steps", "2", "--dtype", "fp32",
                 "--out", str(tmp_path / "v.mp4")]) == 0
    assert main(argv[:-4] + ["--frames", "15"]) == 2  # not 4k+1: one-line error, exit 2


def test_mora_max_sigma_and_decoded_reference(tmp_path, motion_dir):
    """mora_max_sigma: no MoRA term above it (the loss is the flow loss alone), MoRA below it. mora_reference
    decoded: the exact velocity (z0_hat = the clean latent) scores MoRA 0 in every window, which the clip's own
    frames' flows do not give through a VAE that loses detail (the tiny random VAE loses everything)."""
    from smrabooth.align.mora import decoded_window_flows, window_starts
    from smrabooth.models.tiny import build_tiny_wan_pipeline

    pipe, flow_model = build_tiny_wan_pipeline(), tiny_flow_model()

    def flow_fn(a, b):
        return compute_flow(flow_model, a, b)

    capped = config(tmp_path, mora_max_sigma=0.5).validate()
    ex, emb = _example_and_embeds(pipe, motion_dir, flow_model, capped)
    noise = torch.randn((1, *ex.latent.shape), generator=torch.Generator().manual_seed(1))

    class ExactVelocity:
        dtype = torch.float32

        def __call__(self, z_t, t, embeds, return_dict=False):
            return (noise - ex.latent[None],)

    with torch.no_grad():
        high = motion_losses(capped, ExactVelocity(), pipe.vae, flow_fn, ex, emb, torch.tensor([0.7]), noise, 0)
        low = motion_losses(capped, ExactVelocity(), pipe.vae, flow_fn, ex, emb, torch.tensor([0.5]), noise, 0)
    assert "mora" not in high and torch.equal(high["loss"], high["flow"])
    assert float(low["mora"]) > 0.01  # the frames' flows: not what the decoded clean latent shows
    decoded = config(tmp_path, mora_reference="decoded").validate()
    starts = window_starts(ex.latent.shape[1], decoded.window, decoded.window_stride)
    ex_decoded = MotionExample(ex.latent, decoded_window_flows(pipe.vae, ex.latent, starts, flow_fn, decoded.window,
                                                               decoded.drop_frames), ex.text)
    for start in starts:
        with torch.no_grad():
            losses = motion_losses(decoded, ExactVelocity(), pipe.vae, flow_fn, ex_decoded, emb, torch.tensor([0.9]),
                                   noise, start)
        assert float(losses["mora"]) < 1e-5
    with pytest.raises(SmraboothError, match="mora-reference"):
        config(tmp_path, mora_reference="pixels").validate()
    with pytest.raises(SmraboothError, match="mora-max-sigma"):
        config(tmp_path, mora_max_sigma=0).validate()
    # a whole run with both: the decoded reference is built in training and the cap leaves steps without MoRA
    _, final = train(tmp_path, mora_reference="decoded", mora_max_sigma=0.5, steps=4)
    rows = [r for r in read_log(tmp_path / "run" / "log.jsonl") if "loss" in r]
    assert final.is_file() and len(rows) == 4 and any("mora" not in r for r in rows)


def test_captions_without_a_token_give_a_file_that_loads(tmp_path, motion_dir):
    """Captions with no S* (the trainer warns) used to write `token: null` into the file's metadata, which the
    loader then refused as damaged: a trained LoRA no command could read."""
    (motion_dir / "metadata.csv").write_text("file_name,text\nclip_0.mp4,a ball sliding right\n")
    _, path = train(tmp_path, use_mora=False, steps=1)
    lora = load_lora(path)
    assert "token" not in lora.info and lora.info["kind"] == "motion"
    # a file written before the fix (token: null) loads too, without a token
    from safetensors import safe_open
    from safetensors.torch import save_file

    from smrabooth.lora.files import SMRABOOTH_METADATA_KEY

    with safe_open(str(path), "pt") as f:
        tensors, metadata = {k: f.get_tensor(k) for k in f.keys()}, f.metadata()
    metadata[SMRABOOTH_METADATA_KEY] = json.dumps({**json.loads(metadata[SMRABOOTH_METADATA_KEY]), "token": None})
    save_file(tensors, str(tmp_path / "old.safetensors"), metadata)
    assert "token" not in load_lora(tmp_path / "old.safetensors").info
