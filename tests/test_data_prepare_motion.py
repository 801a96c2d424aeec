"""prepare-motion on generated clips whose frame k shows the number k (8 black/white bars, binary)."""

from fractions import Fraction
from math import floor

import numpy as np
import pytest

from smrabooth.cli import main
from smrabooth.data.folders import read_motion_folder
from smrabooth.data.prepare_motion import insert_motion_token, prepare_motion
from smrabooth.errors import SmraboothError
from smrabooth.video import read_video

BARS = 8


def numbered_clip(path, n, rate, w=64, h=48):
    """Lossless H.264 (4:4:4, odd sizes allowed) at an exact rational rate; frame k shows k in binary."""
    import av

    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=rate)
        s.width, s.height, s.pix_fmt = w, h, "yuv444p"
        s.options = {"qp": "0"}
        for k in range(n):
            f = np.zeros((h, w, 3), np.uint8)
            for b in range(BARS):
                if k >> b & 1:
                    f[:, b * (w // BARS):(b + 1) * (w // BARS)] = 255
            for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def numbers(frames, src_width):
    """Read the numbers back from (possibly lossy, cropped) frames: the middle of each bar."""
    bw = src_width // BARS
    centres = frames[:, :, [b * bw + bw // 2 for b in range(BARS)], :].mean(axis=(1, 3))  # (F, BARS)
    return ((centres > 128) * (1 << np.arange(BARS))).sum(axis=1).tolist()


def expected(start, fps_out, n, src_rate):
    """Index of the source frame shown at start + k / fps_out, in exact rational arithmetic."""
    return [floor((Fraction(start) + Fraction(k, fps_out)) * src_rate) for k in range(n)]


def quiet(*_):
    pass


def test_ntsc_rate_odd_size_trim_and_resample(tmp_path):
    rate = Fraction(30000, 1001)
    src = numbered_clip(tmp_path / "in.mp4", 100, rate, w=67, h=49)
    assert numbers(read_video(src).frames, 67) == list(range(100))  # the generator itself is right
    [r] = prepare_motion([src], "dribble", tmp_path / "out", caption="a person S* dribbling", frames=10, fps=15,
                         start=Fraction(1, 2), log=quiet)
    assert r.frames == 10 and r.size == (66, 48) and r.source_size == (67, 49)
    assert abs(r.source_fps - 30000 / 1001) < 1e-6 and abs(r.source_duration - 100 * 1001 / 30000) < 0.01
    out = read_video(tmp_path / "out" / "dribble_00.mp4")
    assert out.frames.shape == (10, 48, 66, 3) and out.fps == 15
    assert numbers(out.frames, 67) == expected(Fraction(1, 2), 15, 10, rate)
    assert not r.warning


def test_too_short_clip_warns_and_keeps_what_it_has(tmp_path):
    src = numbered_clip(tmp_path / "short.mp4", 20, 24)  # 0.833 s
    logs = []
    [r] = prepare_motion([src], "wave", tmp_path / "out", caption="a person S* waving", frames=49, fps=15,
                         log=logs.append)
    n = floor(Fraction(20, 24) * 15)  # 12 frames fit
    assert r.frames == n and "too short" in r.warning and any("warning" in m and "too short" in m for m in logs)
    assert numbers(read_video(tmp_path / "out" / "wave_00.mp4").frames, 64) == expected(0, 15, n, 24)


def test_whole_trim_window_with_end_and_two_clips(tmp_path):
    a = numbered_clip(tmp_path / "a.mp4", 60, 30)
    b = numbered_clip(tmp_path / "b.mp4", 90, 25, w=80, h=32)
    res = prepare_motion([a, b], "jump", tmp_path / "out", caption="a man S* jumps", frames=0, fps=10,
                         start=0.2, end=1.0, log=quiet)
    assert [r.file_name for r in res] == ["jump_00.mp4", "jump_01.mp4"]
    assert numbers(read_video(tmp_path / "out" / "jump_00.mp4").frames, 64) == expected(Fraction(1, 5), 10, 8, 30)
    assert numbers(read_video(tmp_path / "out" / "jump_01.mp4").frames, 80) == expected(Fraction(1, 5), 10, 8, 25)
    items = read_motion_folder(tmp_path / "out", check_files=True)
    assert [(i.video_path.name, i.text) for i in items] == [("jump_00.mp4", "a man S* jumps"),
                                                            ("jump_01.mp4", "a man S* jumps")]


def test_captioner_sees_the_middle_frame_and_user_caption_wins(tmp_path):
    src = numbered_clip(tmp_path / "a.mp4", 60, 30)
    seen = []

    def captioner(image):
        seen.append(numbers(np.asarray(image)[None], 64)[0])
        return "A man dribbling a basketball on a court."

    [r] = prepare_motion([src], "dribble", tmp_path / "o1", frames=9, fps=15, captioner=captioner, log=quiet)
    assert seen == [expected(0, 15, 9, 30)[4]]  # the middle of the 9 output frames
    assert r.text == "a man S* dribbling a basketball on a court"
    [r] = prepare_motion([src], "dribble", tmp_path / "o2", caption="a person S* spinning a ball", frames=9,
                         fps=15, captioner=captioner, log=quiet)
    assert len(seen) == 1 and r.text == "a person S* spinning a ball"


@pytest.mark.parametrize("caption, out", [
    ("a person dribbling a basketball", "a person S* dribbling a basketball"),
    ("a person S* dribbling", "a person S* dribbling"),
    ("A dog is leaping over a fence.", "A dog is S* leaping over a fence."),
    ("Swimming in a pool", "Swimming in a pool, S* motion"),  # no actor before the verb
    ("a man waves", "a man waves, S* motion"),
])
def test_insert_motion_token(caption, out):
    assert insert_motion_token(caption) == out


def test_bad_inputs(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    with pytest.raises(SmraboothError, match="bad.mp4 is not a readable video"):
        prepare_motion([bad], "x", tmp_path / "o", caption="a S* b")
    src = numbered_clip(tmp_path / "a.mp4", 30, 30)
    with pytest.raises(SmraboothError, match="past its end"):
        prepare_motion([src], "x", tmp_path / "o", caption="a S* b", start=5)
    with pytest.raises(SmraboothError, match="whole positive number"):
        prepare_motion([src], "x", tmp_path / "o", caption="a S* b", fps=12.5)
    with pytest.raises(SmraboothError, match="--caption"):
        prepare_motion([src], "x", tmp_path / "o")
    assert not (tmp_path / "o").exists()
    prepare_motion([src], "x", tmp_path / "o", caption="a S* b", frames=5, log=quiet)
    with pytest.raises(SmraboothError, match="--overwrite"):
        prepare_motion([src], "x", tmp_path / "o", caption="a S* b", frames=5)
    prepare_motion([src], "x", tmp_path / "o", caption="a S* c", frames=5, overwrite=True, log=quiet)
    assert [i.text for i in read_motion_folder(tmp_path / "o")] == ["a S* c"]


def test_cli(tmp_path, capsys):
    src = numbered_clip(tmp_path / "a.mp4", 40, 30)
    assert main(["prepare-motion", str(src), "--name", "spin", "--caption", "a person spinning a ball",
                 "--out", str(tmp_path / "o"), "--frames", "7", "--fps", "15", "--start", "0.1"]) == 0
    assert "30 fps, 64x48 -> spin_00.mp4: 7 frames at 15 fps" in capsys.readouterr().out
    [item] = read_motion_folder(tmp_path / "o", check_files=True)
    assert item.text == "a person S* spinning a ball"
    assert main(["prepare-motion", str(tmp_path / "nope.mp4"), "--name", "spin", "--caption", "x S* y",
                 "--out", str(tmp_path / "o2")]) == 2
    assert "nope.mp4 does not exist" in capsys.readouterr().err


def test_captioner_wrapper_plumbing():
    """Captioner with stand-ins for the transformers processor and model: the chat prompt holds an image
    and the request, and only the newly generated tokens are decoded."""
    import torch

    from smrabooth.data.prepare_motion import CAPTION_REQUEST, Captioner

    class Processor:
        def apply_chat_template(self, messages, add_generation_prompt):
            self.messages = messages
            return "PROMPT"

        def __call__(self, images, text, return_tensors):
            from transformers import BatchFeature

            self.images, self.text = images, text
            return BatchFeature({"input_ids": torch.tensor([[1, 2, 3]])})

        def batch_decode(self, ids, skip_special_tokens):
            return [" ".join(f"w{int(i)}" for i in ids[0]) + " "]

    class Model(torch.nn.Module):
        def generate(self, input_ids, max_new_tokens, do_sample):
            return torch.cat([input_ids, torch.tensor([[7, 8]])], dim=1)  # echoes the prompt, like HF models

    proc = Processor()
    cap = Captioner(Model(), proc, device="cpu")
    image = object()
    assert cap(image) == "w7 w8"
    assert proc.images == [image] and proc.text == "PROMPT"
    assert proc.messages[0]["content"] == [{"type": "image"}, {"type": "text", "text": CAPTION_REQUEST}]
