import numpy as np
import pytest

from smrabooth.data.masks import MaskSettings, binarize, clean_mask, fill_holes, largest_component


def square(h=20, w=20, y0=5, y1=15, x0=5, x1=15):
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


def test_binarize_probabilities_uint8_and_rgb():
    p = np.array([[0.2, 0.5, 0.51, 0.9]], np.float32)
    assert binarize(p).tolist() == [[False, False, True, True]]
    assert binarize(p, 0.1).tolist() == [[True, True, True, True]]
    u = np.array([[0, 127, 128, 255]], np.uint8)
    assert binarize(u).tolist() == [[False, False, True, True]]
    rgb = np.zeros((1, 2, 3), np.uint8)
    rgb[0, 1, 2] = 255  # any channel counts
    assert binarize(rgb).tolist() == [[False, True]]


def test_fill_holes_respects_area_and_border():
    m = square()
    m[7:9, 7:9] = False  # 4-pixel hole
    m[10:14, 10:14] = False  # 16-pixel hole
    m[5:8, 14] = False  # notch open to the outside: not a hole
    filled_all = fill_holes(m)
    expected_all = square()
    expected_all[5:8, 14] = False
    np.testing.assert_array_equal(filled_all, expected_all)
    small_only = fill_holes(m, max_area=4)
    expected_small = expected_all.copy()
    expected_small[10:14, 10:14] = False
    np.testing.assert_array_equal(small_only, expected_small)
    # a region touching the image border is never a hole, however small
    e = np.ones((5, 5), bool)
    e[0, 2] = False
    np.testing.assert_array_equal(fill_holes(e), e)


def test_fill_holes_diagonal_ring_encloses():
    # ring closed only by diagonal steps: the centre pixel is still enclosed (4-connected background)
    m = np.array([[0, 0, 0, 0, 0],
                  [0, 0, 1, 0, 0],
                  [0, 1, 0, 1, 0],
                  [0, 0, 1, 0, 0],
                  [0, 0, 0, 0, 0]], bool)
    out = fill_holes(m)
    assert out[2, 2] and out.sum() == 5


def test_largest_component_keeps_biggest_8_connected():
    m = square()
    m[0:2, 0:2] = True  # 4-pixel blob
    m[18, 18] = m[19, 19] = True  # diagonal pair: one 8-connected component of 2
    np.testing.assert_array_equal(largest_component(m), square())
    assert not largest_component(np.zeros((4, 4), bool)).any()
    # diagonal touching joins components
    d = np.eye(6, dtype=bool)
    d[0, 5] = True
    np.testing.assert_array_equal(largest_component(d), np.eye(6, dtype=bool))


def test_clean_mask_pipeline_against_hand_answer():
    prob = np.zeros((40, 40), np.float32)
    prob[10:30, 10:30] = 0.9
    prob[18:20, 18:20] = 0.1  # small hole (4 px <= 1% of 1600 = 16)
    prob[0:3, 35:40] = 0.8  # stray blob
    expected = np.zeros((40, 40), bool)
    expected[10:30, 10:30] = True
    np.testing.assert_array_equal(clean_mask(prob), expected)
    kept = clean_mask(prob, MaskSettings(fill_holes_area=0, largest_component=False))
    np.testing.assert_array_equal(kept, prob > 0.5)
    with pytest.raises(AssertionError):
        np.testing.assert_array_equal(kept, expected)
