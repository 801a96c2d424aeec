"""Video files: H.264 round trip, timestamp-based resampling, clear errors."""

import numpy as np
import pytest

from smrabooth.errors import SmraboothError
from smrabooth.video import Clip, read_video, resample_times, write_gif, write_video


def gradient_clip(n=12, h=32, w=48):
    frames = np.zeros((n, h, w, 3), np.uint8)
    for k in range(n):
        frames[k, :, :, 0] = np.linspace(0, 255, w, dtype=np.uint8)[None, :]
        frames[k, :, :, 1] = 20 * k  # frame k is identified by its green level
    return frames


def test_mp4_round_trip(tmp_path):
    frames = gradient_clip()
    write_video(frames, tmp_path / "v.mp4", fps=15)
    clip = read_video(tmp_path / "v.mp4")
    assert clip.frames.shape == frames.shape and abs(clip.fps - 15) < 1e-6
    np.testing.assert_allclose(clip.times, np.arange(12) / 15, atol=1e-3)
    assert np.abs(clip.frames.astype(int) - frames.astype(int)).mean() < 3  # lossy but close
    green = clip.frames[:, :, :, 1].mean(axis=(1, 2))
    assert np.all(np.abs(green - 20 * np.arange(12)) < 4)
    write_gif(frames, tmp_path / "v.gif", fps=15)
    assert (tmp_path / "v.gif").stat().st_size > 0


def test_resample_by_timestamps_handles_variable_rate():
    # 30 fps for the first second, then 10 fps: a variable-frame-rate clip
    times = np.concatenate([np.arange(30) / 30, 1 + np.arange(10) / 10])
    clip = Clip(np.zeros((40, 2, 2, 3), np.uint8), times, 20.0)
    idx = resample_times(clip, fps=10)
    shown = times[idx]
    np.testing.assert_allclose(shown, np.arange(len(idx)) / 10, atol=1e-9)
    assert len(idx) == 20
    assert list(resample_times(clip, fps=5, num_frames=3, start=0.5)) == [15, 21, 27]


def test_read_video_errors(tmp_path):
    with pytest.raises(SmraboothError, match="does not exist"):
        read_video(tmp_path / "none.mp4")
    (tmp_path / "bad.mp4").write_bytes(b"\x00" * 100)
    with pytest.raises(SmraboothError, match="not a readable video|no video stream|no frames"):
        read_video(tmp_path / "bad.mp4")
    assert write_video(gradient_clip(), tmp_path / "missing" / "v.mp4", fps=15).is_file()  # folders are made
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(SmraboothError, match="a-file"):
        write_video(gradient_clip(), tmp_path / "a-file" / "v.mp4", fps=15)
