"""The SMRA-Sprites bundle: build, save, load back through the real loaders, tokenizer coverage."""

import pytest
import torch

from smrabooth.errors import SmraboothError
from smrabooth_sprites import VOCABULARY, combined_prompt, sample_clip
from smrabooth_sprites.bundle import (
    build_sprites_models,
    bundled_model_dir,
    load_bundle,
    parameter_counts,
    save_bundle,
)


@pytest.fixture(scope="module")
def tiny_bundle(tmp_path_factory):
    models = build_sprites_models("tiny", seed=0)
    out = save_bundle(models, tmp_path_factory.mktemp("b") / "bundle")
    return models, out


def test_tokenizer_knows_every_sprites_word():
    tok = build_sprites_models("tiny").pipe.tokenizer
    unk = tok.unk_token_id
    texts = [sample_clip(seed=s, frames=5, size=32).caption for s in range(20)] + [combined_prompt("heart", "green")]
    for text in texts:
        ids = tok(text).input_ids
        assert unk not in ids, text
    ids = {w: tok(w).input_ids[0] for w in VOCABULARY}
    assert len(set(ids.values())) == len(VOCABULARY)  # V* and S* get ids of their own
    assert tok("V*").input_ids[0] != tok("v").input_ids[0]


def test_saved_bundle_loads_through_the_real_loaders(tiny_bundle):
    models, out = tiny_bundle
    loaded = load_bundle(out)
    assert loaded.preset == "tiny"
    # Weights are stored in bf16: loaded values equal the originals rounded to bf16.
    for name, a, b in [("transformer", models.pipe.transformer, loaded.pipe.transformer),
                       ("dinov2", models.dinov2, loaded.dinov2), ("searaft", models.searaft, loaded.searaft)]:
        sa, sb = a.state_dict(), b.state_dict()
        for k, v in sa.items():
            if v.is_floating_point():
                torch.testing.assert_close(sb[k].float(), v.to(torch.bfloat16).float(), msg=f"{name}.{k}")
    clip = sample_clip(seed=1, frames=9, size=128)
    x = torch.from_numpy(clip.frames).permute(3, 0, 1, 2)[None].float() / 127.5 - 1
    with torch.no_grad():
        z = loaded.pipe.vae.encode(x).latent_dist.mode()
    assert z.shape == (1, 16, 3, 16, 16)


def test_small_preset_fits_the_size_budget():
    counts = parameter_counts(build_sprites_models("small"))
    assert 5e6 < sum(counts.values()) < 12.5e6  # under 25 MB in bf16


def test_bundle_errors(tmp_path, tiny_bundle, monkeypatch):
    models, out = tiny_bundle
    with pytest.raises(SmraboothError, match="already exists"):
        save_bundle(models, out)
    monkeypatch.setattr("smrabooth_sprites.bundle.ASSET_DIR", tmp_path / "missing")
    with pytest.raises(SmraboothError, match="train_sprites.py"):
        bundled_model_dir()
    with pytest.raises(SmraboothError, match="no model_index.json"):
        load_bundle(tmp_path)


def test_the_shipped_bundle_loads_and_generates_through_the_cli(tmp_path):
    from smrabooth.cli import main
    from smrabooth.video import read_video

    model = bundled_model_dir()
    info = load_bundle(model).info
    assert info["preset"] == "small" and info["training"]["dit"]["trained"]
    out = tmp_path / "v.mp4"
    assert main(["generate", "--model", str(model), "--prompt", "a red solid circle moving left on a blue background",
                 "--frames", "5", "--height", "128", "--width", "128", "--steps", "3", "--dtype", "fp32",
                 "--out", str(out)]) == 0
    frames = read_video(out).frames
    assert frames.shape[0] == 5 and frames.shape[1:3] == (128, 128)
