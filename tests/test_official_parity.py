"""Parity with the authors' code, guarded without their checkout.

tests/fixtures/official_parity.safetensors holds what their code computed in a run of
scripts/check_official_parity.py (their draws, losses, lr, dtypes, and sketches of their latents, gradients, LoRA
values and sampled latents; their commit and the date are in its metadata). These tests run this project's
trainers and sampler on the same inputs and draws and compare, row by row, at the harness's tolerances
(docs/parity.md). The motion stage's MoRA phase (minutes on a CPU) is checked by the harness only.
"""

import sys
from pathlib import Path

import pytest

sys.path[:0] = [str(Path(__file__).parents[1] / "scripts" / "official_parity"),
                str(Path(__file__).parents[1] / "scripts")]

from fixture import FIXTURE, prepare_inputs, run_fixture  # noqa: E402  (found through the sys.path line above)
from rows import print_table  # noqa: E402

pytestmark = pytest.mark.skipif(not FIXTURE.is_file(), reason="no parity fixture")


def _table(rows) -> str:
    import io

    out = io.StringIO()
    print_table(rows, out)
    return out.getvalue()


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """The tiny models, images, clip, prompts and LoRAs of the fixture's run, rebuilt from seeds once."""
    work = tmp_path_factory.mktemp("official_parity")
    prepare_inputs(work)
    return work


def test_official_recipe_computes_what_the_authors_code_computed(inputs):
    rows = run_fixture(inputs, prepared=True)
    assert rows and all(r.ok for r in rows), _table(rows)


@pytest.mark.parametrize("plant, stage", [("bell", "subject"), ("warmup5", "subject"), ("shift5", "sample"),
                                          ("subject-scale", "sample"), ("spatial-on", "motion")])
def test_a_planted_difference_fails_a_row(inputs, plant, stage):
    """The bell weight, the warm-up, the sampler's shift and LoRA scales, and a spatial LoRA that trains: each
    changed on our side makes some row fail."""
    from plants import planted

    with planted([plant]):
        rows = run_fixture(inputs, stages=(stage,), prepared=True)
    assert not all(r.ok for r in rows), _table(rows)
