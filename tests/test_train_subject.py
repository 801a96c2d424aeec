"""Subject LoRA training with SuRA on the tiny Wan model and a tiny DINOv2."""

import json
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file

from smrabooth.align.sura import build_projector, sura_loss, tokens_on_grid
from smrabooth.errors import SmraboothError
from smrabooth.lora.files import load_lora
from smrabooth.models.dinov2 import build_tiny_dinov2
from smrabooth.train.common import list_checkpoints, read_log
from smrabooth.train.subject import SubjectTrainConfig, masked_flow_loss, train_subject

RES = 64


def make_subject_folder(root, n=1, size=(80, 64)):
    """A red disk on a blue background, with its mask, in the authors' layout."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rows = ["file_name,text"]
    for i in range(n):
        w, h = size
        yy, xx = np.mgrid[:h, :w]
        disk = (xx - w / 2 - 6 * i) ** 2 + (yy - h / 2) ** 2 < (min(w, h) / 4) ** 2
        img = np.zeros((h, w, 3), np.uint8)
        img[..., 2] = 200
        img[disk] = (230, 30, 30)
        Image.fromarray(img).save(root / "images" / f"{i:02d}.png")
        Image.fromarray((disk * 255).astype(np.uint8)).save(root / "masks" / f"{i:02d}.png")
        rows.append(f"{i:02d}.png,a picture of V* ball")
    (root / "metadata.csv").write_text("\n".join(rows) + "\n")
    return root


def config(tmp_path, **kw):
    base = dict(model="tiny", data=str(tmp_path / "subject"), out=str(tmp_path / "run"), steps=4, rank=4, alpha=4,
                lr=1e-3, resolution=RES, projector_width=32, gradient_checkpointing=False, checkpoint_every=2,
                save_dtype="fp32", cache_dir=str(tmp_path / "cache"), seed=0)
    base.update(kw)
    return SubjectTrainConfig.from_recipe("paper", **base)  # official: tests/test_official_recipe.py


@pytest.fixture
def subject_dir(tmp_path):
    return make_subject_folder(tmp_path / "subject")


def train(tmp_path, pipe=None, **kw):
    from smrabooth.models.tiny import build_tiny_wan_pipeline

    pipe = pipe or build_tiny_wan_pipeline()
    return pipe, train_subject(config(tmp_path, **kw), pipe, build_tiny_dinov2(), model_id="tiny", progress=False)


def test_sura_loss_equals_hand_computation():
    torch.manual_seed(0)
    proj = build_projector(6, 4, width=8)
    hidden, target = torch.randn(1, 5, 6), torch.randn(1, 5, 4)
    pred = proj(hidden)
    by_hand = -np.mean([float(pred[0, n].detach() @ target[0, n] / (pred[0, n].detach().norm() * target[0, n].norm()))
                        for n in range(5)])
    assert abs(float(sura_loss(target, hidden, proj).detach()) - by_hand) < 1e-6
    # perfectly aligned tokens give -1
    assert float(sura_loss(pred.detach() * 3, hidden, proj).detach()) == pytest.approx(-1.0, abs=1e-6)


def test_tokens_are_resampled_not_pooled():
    feats = torch.arange(2 * 2 * 3, dtype=torch.float32).reshape(1, 2, 2, 3)
    assert torch.equal(tokens_on_grid(feats, (2, 2)), feats.reshape(1, 4, 3))
    up = tokens_on_grid(feats, (4, 4))
    assert up.shape == (1, 16, 3)
    # bilinear upsampling keeps the corners' values and the spatial order
    grid = up.reshape(4, 4, 3)
    assert torch.allclose(grid[0, 0], feats[0, 0, 0]) and torch.allclose(grid[3, 3], feats[0, 1, 1])


def test_region_loss_ignores_everything_outside_the_mask():
    torch.manual_seed(0)
    u, v = torch.randn(1, 16, 1, 8, 8), torch.randn(1, 16, 1, 8, 8)
    mask = torch.zeros(1, 1, 1, 8, 8)
    mask[..., 2:6, 3:7] = 1
    before = masked_flow_loss(u, v, mask)
    u2, v2 = u.clone(), v.clone()
    u2[..., 0, :] += 5.0  # row 0 is outside the mask
    v2[..., :, 0] -= 3.0  # column 0 too
    assert torch.equal(masked_flow_loss(u2, v2, mask), before)
    inside = u.clone()
    inside[..., 3, 4] += 1.0
    assert masked_flow_loss(inside, v, mask) > before
    assert torch.allclose(masked_flow_loss(u, v, torch.ones_like(mask)), F.mse_loss(u, v))


def test_gradients_reach_only_lora_and_projector(tmp_path, subject_dir, monkeypatch):
    """Run one real training step and inspect every parameter's gradient right after backward."""
    from smrabooth.models.tiny import build_tiny_wan_pipeline
    from smrabooth.train import common

    seen = {}
    original = torch.optim.AdamW.step

    def spy(self, *a, **k):
        if not seen:
            seen["transformer"] = {n: p.grad for n, p in pipe.transformer.named_parameters()}
            seen["encoder"] = [p.grad for p in encoder.parameters()]
            seen["opt_params"] = [p for g in self.param_groups for p in g["params"]]
        return original(self, *a, **k)

    monkeypatch.setattr(common.torch.optim.AdamW, "step", spy)
    pipe, encoder = build_tiny_wan_pipeline(), build_tiny_dinov2()
    train_subject(config(tmp_path, steps=1), pipe, encoder, model_id="tiny", progress=False)
    grads = seen["transformer"]
    lora = {n: g for n, g in grads.items() if "lora_" in n}
    assert lora and all(g is not None for g in lora.values())
    assert sum(float(g.abs().sum()) for g in lora.values()) > 0
    assert all(g is None for n, g in grads.items() if "lora_" not in n)  # backbone frozen
    assert all(g is None for g in seen["encoder"])  # DINOv2 frozen
    n_projector = 6  # 3 linears x (weight, bias)
    assert len(seen["opt_params"]) == len(lora) + n_projector
    assert all(p.grad is not None for p in seen["opt_params"])


def test_no_sura_equals_zero_weight_sura(tmp_path, subject_dir):
    _, a = train(tmp_path, use_sura=False, out=str(tmp_path / "a"))
    _, b = train(tmp_path, sura_weight=0.0, out=str(tmp_path / "b"))
    la, lb = load_lora(a), load_lora(b)
    assert all(torch.equal(la.tensors[k], lb.tensors[k]) for k in la.tensors)
    log_a, log_b = read_log(tmp_path / "a" / "log.jsonl"), read_log(tmp_path / "b" / "log.jsonl")
    assert "sura" not in log_a[0] and "sura" in log_b[0]
    assert [r["flow"] for r in log_a] == [r["flow"] for r in log_b]
    _, c = train(tmp_path, sura_weight=1.0, out=str(tmp_path / "c"))
    assert not all(torch.equal(la.tensors[k], load_lora(c).tensors[k]) for k in la.tensors)


def test_resume_is_exact(tmp_path, subject_dir):
    from smrabooth.models.tiny import build_tiny_wan_pipeline

    _, straight = train(tmp_path, steps=4, out=str(tmp_path / "straight"))
    cfg2 = config(tmp_path, steps=2, out=str(tmp_path / "resumed"))
    train_subject(cfg2, build_tiny_wan_pipeline(), build_tiny_dinov2(), model_id="tiny", progress=False)
    cfg4 = config(tmp_path, steps=4, out=str(tmp_path / "resumed"))
    resumed = train_subject(cfg4, build_tiny_wan_pipeline(), build_tiny_dinov2(), model_id="tiny", resume=True,
                            progress=False)
    a, b = load_lora(straight), load_lora(resumed)
    assert all(torch.equal(a.tensors[k], b.tensors[k]) for k in a.tensors)
    log = read_log(tmp_path / "resumed" / "log.jsonl")
    assert [r["step"] for r in log] == [1, 2, 3, 4]
    assert [r["loss"] for r in log] == [r["loss"] for r in read_log(tmp_path / "straight" / "log.jsonl")]


def test_checkpoint_is_complete_or_absent(tmp_path, subject_dir, monkeypatch):
    from smrabooth.models.tiny import build_tiny_wan_pipeline
    from smrabooth.train import common

    real = common.torch.save
    calls = {"n": 0}

    def crash_on_second_checkpoint(obj, path, *a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt("power cut")
        return real(obj, path, *a, **k)

    monkeypatch.setattr(common.torch, "save", crash_on_second_checkpoint)
    with pytest.raises(KeyboardInterrupt):
        train_subject(config(tmp_path, steps=4), build_tiny_wan_pipeline(), build_tiny_dinov2(), model_id="tiny",
                      progress=False)
    monkeypatch.setattr(common.torch, "save", real)
    run = tmp_path / "run"
    assert [s for s, _ in list_checkpoints(run)] == [2]  # step-4 never appeared half-written
    assert not (run / "checkpoints" / "step-4").exists()
    for f in ("lora.safetensors", "projector.safetensors", "optimizer.pt", "rng.safetensors", "state.json"):
        assert (run / "checkpoints" / "step-2" / f).is_file()
    # the run folder refuses a fresh start, and resumes from step 2
    with pytest.raises(SmraboothError, match="unfinished run \\(checkpoint at step 2\\)"):
        train_subject(config(tmp_path, steps=4), build_tiny_wan_pipeline(), build_tiny_dinov2(), model_id="tiny",
                      progress=False)
    out = train_subject(config(tmp_path, steps=4), build_tiny_wan_pipeline(), build_tiny_dinov2(), model_id="tiny",
                        resume=True, progress=False)
    assert out.is_file()


def test_training_learns_the_subject(tmp_path, subject_dir):
    """The flow loss at fixed (sigma, noise) falls, and sampling with the LoRA moves toward the image latent."""
    from smrabooth.data.subject import encode_image_latent, load_image_and_mask
    from smrabooth.models.tiny import build_tiny_wan_pipeline
    from smrabooth.sampling import GenerateConfig, attach_loras, sample_video

    pipe = build_tiny_wan_pipeline()
    image, _ = load_image_and_mask(subject_dir / "images" / "00.png", subject_dir / "masks" / "00.png", RES)
    z0 = encode_image_latent(pipe.vae, image)[None]
    emb, _ = pipe.encode_prompt("a picture of V* ball", do_classifier_free_guidance=False, device="cpu")
    g = torch.Generator().manual_seed(123)
    probes = [(s, torch.randn(z0.shape, generator=g)) for s in (0.3, 0.6, 0.9)]

    def probe_loss(transformer):
        with torch.no_grad():
            return float(np.mean([F.mse_loss(transformer((1 - s) * z0 + s * n, torch.tensor([s * 1000]), emb,
                                                         return_dict=False)[0], n - z0) for s, n in probes]))

    def sample_latent(p):
        cfg = GenerateConfig(prompt="a picture of V* ball", frames=1, height=RES, width=RES, steps=20, guidance=1.0,
                             scheduler="euler", seed=5)
        return sample_video(p, cfg, progress=False, output_type="latent").frames

    before_loss, before = probe_loss(pipe.transformer), sample_latent(pipe)
    lora_path = train_subject(config(tmp_path, steps=200, rank=8, alpha=8, lr=5e-3, use_mask=False,
                                     checkpoint_every=100), pipe, build_tiny_dinov2(), model_id="tiny",
                              progress=False)
    fresh = build_tiny_wan_pipeline()
    attach_loras(fresh, GenerateConfig(injection="dense"), load_lora(lora_path), None)
    after_loss, after = probe_loss(fresh.transformer), sample_latent(fresh)
    assert after_loss < 0.8 * before_loss
    assert F.mse_loss(after, z0) < 0.7 * F.mse_loss(before, z0)


def test_cache_is_reused(tmp_path, subject_dir, monkeypatch):
    from smrabooth.models.tiny import build_tiny_wan_pipeline

    train(tmp_path, steps=1, out=str(tmp_path / "a"))
    pipe = build_tiny_wan_pipeline()
    monkeypatch.setattr(pipe.vae, "encode", lambda *a, **k: pytest.fail("VAE ran although latents were cached"))
    train(tmp_path, pipe=pipe, steps=1, out=str(tmp_path / "b"))
    assert len(list((tmp_path / "cache").glob("*.safetensors"))) == 2  # one image, one caption


def test_cache_follows_the_model_files_not_their_path(tmp_path, subject_dir, monkeypatch):
    """A model folder's VAE replaced in place must not find the old VAE's latents (it did: keys held the
    folder's name, and a retrained bundle trained its LoRAs on the previous bundle's latents); the same
    files at another path, or an unchanged text encoder, still hit the cache."""
    import shutil

    from smrabooth.data.cache import model_digest
    from smrabooth.models.tiny import build_tiny_wan_pipeline

    pipe = build_tiny_wan_pipeline()
    model = tmp_path / "model"
    pipe.save_pretrained(model)
    cache = tmp_path / "cache"

    def run(name, pipe, model_dir):
        return train_subject(config(tmp_path, out=str(tmp_path / name), steps=1), pipe, build_tiny_dinov2(),
                             model_id=str(model_dir), progress=False)

    run("a", pipe, model)
    entries = set(cache.glob("*.safetensors"))
    assert len(entries) == 2  # one image, one caption
    # the same files elsewhere: every entry is found (the VAE and the text encoder never run)
    shutil.copytree(model, tmp_path / "copy")
    same = build_tiny_wan_pipeline()
    monkeypatch.setattr(same.vae, "encode", lambda *a, **k: pytest.fail("VAE ran for a copy of the same model"))
    run("b", same, tmp_path / "copy")
    assert set(cache.glob("*.safetensors")) == entries
    monkeypatch.undo()
    # the VAE retrained in place: its latents are computed again (and equal the new VAE's), the caption is not
    with torch.no_grad():
        for p in pipe.vae.parameters():
            p.mul_(1.1)
    before = model_digest(str(model), ("vae",), cache)
    pipe.vae.save_pretrained(model / "vae")
    assert model_digest(str(model), ("vae",), cache) != before
    assert model_digest(str(model), ("text_encoder", "tokenizer"), cache) == \
        model_digest(str(tmp_path / "copy"), ("text_encoder", "tokenizer"), cache)
    third = build_tiny_wan_pipeline()
    third.vae = pipe.vae
    run("c", third, model)
    new = set(cache.glob("*.safetensors")) - entries
    assert len(new) == 1
    from smrabooth.data.subject import encode_image_latent
    from smrabooth.train.subject import load_image_and_mask

    image, _ = load_image_and_mask(subject_dir / "images" / "00.png", subject_dir / "masks" / "00.png", RES)
    with torch.no_grad():
        fresh = encode_image_latent(pipe.vae, image)
    torch.testing.assert_close(load_file(new.pop())["latent"], fresh)
    assert model_digest("tiny") == "name:tiny"  # a model built in code stands for its name


def test_run_folder_and_bad_input(tmp_path, subject_dir):
    from smrabooth.models.tiny import build_tiny_wan_pipeline

    train(tmp_path, steps=2)
    cfg = json.loads(json.dumps(__import__("yaml").safe_load((tmp_path / "run" / "config.yaml").read_text())))
    assert cfg["sura_weight"] == 0.05 and cfg["layer_types"] == ["q", "k", "v", "o", "ffn.0", "ffn.2"]
    log = read_log(tmp_path / "run" / "log.jsonl")
    assert set(log[0]) >= {"step", "loss", "flow", "sura", "lr", "seconds"}
    with pytest.raises(SmraboothError, match="already holds a finished run"):
        train(tmp_path, steps=2)
    # a mask of another size
    Image.new("L", (10, 10), 255).save(subject_dir / "masks" / "00.png")
    with pytest.raises(SmraboothError, match="masks must have the size of their images"):
        train_subject(config(tmp_path, out=str(tmp_path / "x")), build_tiny_wan_pipeline(), build_tiny_dinov2(),
                      model_id="tiny", progress=False)
    # an empty mask
    Image.new("L", (80, 64), 0).save(subject_dir / "masks" / "00.png")
    with pytest.raises(SmraboothError, match="all black"):
        train_subject(config(tmp_path, out=str(tmp_path / "y")), build_tiny_wan_pipeline(), build_tiny_dinov2(),
                      model_id="tiny", progress=False)


def test_train_subject_cli_then_generate(tiny_model_dir, tmp_path, subject_dir, capsys):
    from smrabooth.cli import main

    build_tiny_dinov2().save_pretrained(tmp_path / "dino")
    argv = ["train-subject", "--recipe", "paper", "--model", str(tiny_model_dir), "--data", str(subject_dir),
            "--encoder", str(tmp_path / "dino"), "--out", str(tmp_path / "run"), "--steps", "3", "--rank", "4", "--alpha", "4",
            "--resolution", "64", "--dtype", "fp32", "--cache-dir", str(tmp_path / "cache"), "--quiet",
            "--validate-every", "3", "--validation-prompt", "a V* ball on the beach", "--projector-width", "24"]
    t0 = time.perf_counter()
    assert main(argv) == 0
    wall = time.perf_counter() - t0
    times = json.loads((tmp_path / "run" / "timings.json").read_text())  # where the time went, phase by phase
    assert list(times) == ["captions", "precompute", "offload", "lora", "setup", "loop", "save", "total"]
    assert min(times.values()) >= 0 and times["loop"] > 0 and times["total"] <= wall
    lora = tmp_path / "run" / "subject_lora.safetensors"
    assert lora.is_file() and (tmp_path / "run" / "validation" / "step-3.mp4").is_file()
    projector = load_file(str(tmp_path / "run" / "projector.safetensors"))
    assert projector["0.weight"].shape[0] == 24 and projector["2.weight"].shape == (24, 24)
    assert main(argv) == 2 and "already holds a finished run" in capsys.readouterr().err
    assert main(["generate", "--model", str(tiny_model_dir), "--subject-lora", str(lora), "--prompt", "a V* ball",
                 "--frames", "5", "--height", "32", "--width", "32", "--steps", "2", "--dtype", "fp32",
                 "--out", str(tmp_path / "v.mp4")]) == 0


def test_subject_folder_forms_and_errors(tmp_path):
    from smrabooth.data.folders import read_subject_folder

    authors = make_subject_folder(tmp_path / "a", n=2)
    items = read_subject_folder(authors)
    assert [i.image_path.name for i in items] == ["00.png", "01.png"]
    assert all(i.mask_path.name == i.image_path.name and i.text == "a picture of V* ball" for i in items)
    # a plain folder of photos, captioned from --name, masks matched by stem
    plain = tmp_path / "plain"
    plain.mkdir()
    Image.new("RGB", (20, 20)).save(plain / "x.jpg")
    (plain / "masks").mkdir()
    Image.new("L", (20, 20), 255).save(plain / "masks" / "x.png")
    [item] = read_subject_folder(plain, name="dog")
    assert item.text == "a picture of V* dog" and item.mask_path.name == "x.png"
    with pytest.raises(SmraboothError, match="pass --name"):
        read_subject_folder(plain)
    (plain / "masks" / "x.png").unlink()
    with pytest.raises(SmraboothError, match="no mask for .*--no-mask"):
        read_subject_folder(plain, name="dog")
    assert read_subject_folder(plain, name="dog", require_masks=False)[0].mask_path is None
    (authors / "metadata.csv").write_text("file_name,text\nmissing.png,a picture of V* ball\n")
    with pytest.raises(SmraboothError, match="names missing.png but .* does not exist"):
        read_subject_folder(authors)
    (authors / "images" / "00.png").write_bytes(b"garbage")
    (authors / "metadata.csv").write_text("file_name,text\n00.png,a picture of V* ball\n")
    from smrabooth.data.subject import load_image_and_mask

    with pytest.raises(SmraboothError, match="is not a readable image"):
        load_image_and_mask(authors / "images" / "00.png", None, 64)


def test_encoder_is_loaded_only_on_a_cache_miss(tmp_path, subject_dir):
    """A loader function runs once on a first run, never on a run whose features are cached, and the LoRA
    equals the one trained with the model passed directly (same seed)."""
    from smrabooth.models.tiny import build_tiny_wan_pipeline

    calls = []

    def load():
        calls.append(1)
        return build_tiny_dinov2()

    first = train_subject(config(tmp_path, out=str(tmp_path / "a"), steps=2), build_tiny_wan_pipeline(), load,
                          model_id="tiny", progress=False)
    assert len(calls) == 1
    second = train_subject(config(tmp_path, out=str(tmp_path / "b"), steps=2), build_tiny_wan_pipeline(), load,
                           model_id="tiny", progress=False)
    assert len(calls) == 1  # features came from the cache
    direct = train_subject(config(tmp_path, out=str(tmp_path / "c"), steps=2, cache_dir=str(tmp_path / "cache2")),
                           build_tiny_wan_pipeline(), build_tiny_dinov2(), model_id="tiny", progress=False)
    a, b, c = (load_file(str(p)) for p in (first, second, direct))
    assert a.keys() == c.keys() and all(torch.equal(a[k], b[k]) and torch.equal(a[k], c[k]) for k in a)


def test_cuda_graphs_setting(tmp_path, subject_dir, monkeypatch):
    """--cuda-graphs implies --compile, refuses validation videos and the CPU, and compiles the blocks
    with mode 'reduce-overhead' (its speed and equality to plain --compile were measured on an H200)."""
    from smrabooth.models.tiny import build_tiny_wan_pipeline
    from smrabooth.train.common import compile_blocks

    assert SubjectTrainConfig(cuda_graphs=True).validate().compile
    with pytest.raises(SmraboothError, match="--cuda-graphs with --validate-every"):
        SubjectTrainConfig(cuda_graphs=True, validate_every=5, validation_prompt="x").validate()
    with pytest.raises(SmraboothError, match="needs a CUDA device"):
        train_subject(config(tmp_path, cuda_graphs=True), build_tiny_wan_pipeline(), build_tiny_dinov2(),
                      model_id="tiny", progress=False)
    assert not (tmp_path / "run").exists()  # refused before anything was written
    pipe, seen = build_tiny_wan_pipeline(), []
    monkeypatch.setattr(pipe.transformer, "compile_repeated_blocks", lambda **kw: seen.append(kw))
    compile_blocks(pipe.transformer, cuda_graphs=True)
    compile_blocks(pipe.transformer)
    assert seen == [{"mode": "reduce-overhead"}, {}]


def test_cache_writes_through_a_temporary_of_its_own(tmp_path):
    """Parallel runs (`bench sprites --jobs`) compute the same cache entry at once (the same clips or captions
    in several cases): each writer must use a temporary file of its own. A shared name failed as soon as another
    writer held it (here: another process's temporary left as a folder)."""
    from smrabooth.data.cache import cache_key, cached

    key = cache_key(kind="test")
    (tmp_path / f".{key}.safetensors.tmp").mkdir()  # the name every writer used before
    out = cached(tmp_path, key, lambda: {"x": torch.arange(3.0)})
    assert torch.equal(out["x"], torch.arange(3.0))
    assert torch.equal(cached(tmp_path, key, lambda: pytest.fail("computed again"))["x"], torch.arange(3.0))
    assert not list(tmp_path.glob(f".{key}.safetensors.*.tmp"))


def test_still_frames_train_on_the_photo_as_a_still_video(tmp_path, subject_dir, monkeypatch):
    """--still-frames 5: each photo's latent is the VAE's of the photo repeated 5 times (2 latent frames: the
    causal first frame and one of 4), the mask covers both, SuRA aligns both frames' tokens; the run trains."""
    from smrabooth.data.motion import encode_video_latent
    from smrabooth.train import subject as subject_module

    seen = {}
    real = subject_module.sura_loss

    def spy(target, hidden, projector):
        seen["shapes"] = (tuple(target.shape), tuple(hidden.shape))
        return real(target, hidden, projector)

    monkeypatch.setattr(subject_module, "sura_loss", spy)
    pipe, path = train(tmp_path, steps=2, still_frames=5)
    examples = subject_module.precompute_examples(config(tmp_path, still_frames=5), pipe, build_tiny_dinov2,
                                                  subject_module.read_subject_items(config(tmp_path)), "tiny",
                                                  tmp_path / "cache", progress=False)
    assert examples[0].latent.shape[1] == 2
    from smrabooth.data.subject import load_image_and_mask

    image, _ = load_image_and_mask(subject_dir / "images" / "00.png", None, RES)
    expected = encode_video_latent(pipe.vae, image[None].expand(5, *image.shape))
    assert torch.allclose(examples[0].latent, expected, atol=1e-5)
    (n_target, n_hidden) = seen["shapes"][0][1], seen["shapes"][1][1]
    assert n_target == n_hidden == 2 * examples[0].tokens.shape[0]
    assert np.isfinite(read_log(tmp_path / "run" / "log.jsonl")[-1]["loss"]) and load_lora(path).tensors
    with pytest.raises(SmraboothError, match="--still-frames 4 is not 4k\\+1"):
        config(tmp_path, still_frames=4).validate()


def test_a_batch_is_one_forward_and_the_same_lora_as_its_samples_one_by_one(tmp_path):
    """--batch-size 2 runs both samples in one forward (a launch-bound GPU step costs about one sample's) and trains
    the LoRA that the same two draws give one after the other (--gradient-accumulation 2)."""
    from safetensors.torch import load_file

    from smrabooth.models.tiny import build_tiny_wan_pipeline

    make_subject_folder(tmp_path / "subject", n=3)
    files, forwards = {}, {}
    for name, batch, accumulation in (("batched", 2, 1), ("one-by-one", 1, 2)):
        pipe = build_tiny_wan_pipeline()
        forwards[name] = []
        hook = pipe.transformer.register_forward_pre_hook(lambda m, a, n=name: forwards[n].append(a[0].shape[0]))
        _, files[name] = train(tmp_path, pipe, steps=3, batch_size=batch, gradient_accumulation=accumulation,
                               out=str(tmp_path / name))
        hook.remove()
    assert forwards == {"batched": [2, 2, 2], "one-by-one": [1] * 6}
    logs = {name: read_log(tmp_path / name / "log.jsonl") for name in files}
    for x, y in zip(*logs.values()):  # the same draws and the same mean: the losses agree to float rounding
        assert x["loss"] == pytest.approx(y["loss"], rel=1e-6) and x["sura"] == pytest.approx(y["sura"], rel=1e-6)
    a, b = load_file(str(files["batched"])), load_file(str(files["one-by-one"]))
    assert a.keys() == b.keys() and any(v.abs().sum() > 0 for k, v in a.items() if "lora_B" in k)
    # AdamW moves a weight by about lr a step whatever its gradient's size, so where a gradient is near zero the
    # rounding of a batched matmul (1e-7) can change a step: 1% of lr x steps (seen: 0.4%)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0.01 * 1e-3 * 3, msg=k)
