"""The CI fixture: what the authors' code computed in a harness run, small enough to keep in the repository.

`write_fixture` (check_official_parity.py --write-fixture) stores, from their records: every draw (ints and noise
seeds), every loss, the lr and dtypes of each optimizer step, and sketches (rows.sketch: 8 fixed projections) of
their tensors: latents, DINOv2 tokens, gradients, the LoRA after the steps, the sampled latents and video. The
inputs are rebuilt from seeds (common.py, ours.prepare); the initial LoRA and projector from their names
(common.initial_value); a checksum of each rebuilt input is stored and checked, so a change of torch's random
numbers shows as that, not as a parity failure.

`run_fixture` (tests/test_official_parity.py) runs our side on it and returns the rows: the subject stage, the
motion stage's phase 1 (its MoRA phase 2 takes minutes on a CPU: the harness checks it), and the inference.
"""

from __future__ import annotations

import datetime
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common as C
import rows as R
from compare import compare_motion_phase1, compare_sample, compare_subject, their_sample, their_stage

FIXTURE = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "official_parity.safetensors"
INFO_KEYS = ("subject", "motion", "searaft", "combine_inference")


def _sketch_stage(th: dict, prefix: str, tensors: dict) -> dict:
    """Their stage as JSON (draws, losses, step settings), its tensors sketched into `tensors`."""
    samples = []
    for i, (meta, ts, data_id) in enumerate(th["samples"]):
        keep = {k: v for k, v in ts.items() if k in ("input_latents", "zs", "latents")}
        for k, v in keep.items():
            tensors[f"{prefix}.sample{i}.{k}"] = R.sketch(v)
        samples.append({"meta": meta, "data_id": data_id, "tensors": sorted(keep)})
    steps = []
    for k, step in enumerate(th["steps"]):
        for part in ("grads", "after"):
            for name, v in step[part].items():
                tensors[f"{prefix}.step{k}.{part}.{name}"] = R.sketch(v)
        steps.append({key: step[key] for key in ("lr", "none", "param_dtypes", "state_dtypes")}
                     | {"grads": sorted(step["grads"]), "after": sorted(step["after"])})
    init = {k: list(v.shape) for k, v in th["init"].items()}
    return {"samples": samples, "steps": steps, "init": init, "active": th["active"]}


def write_fixture(work: Path, commit: str, info: dict, path: Path = FIXTURE) -> Path:
    tensors: dict[str, torch.Tensor] = {}
    meta = {"commit": commit, "date": datetime.date.today().isoformat(),
            "command": "python scripts/check_official_parity.py --checkout CHECKOUT --write-fixture",
            "info": {k: info[k] for k in INFO_KEYS}, "tolerances": {"FP32": R.FP32, "FP32_GRAD": R.FP32_GRAD,
                                                                    "ADAM_FRACTION": R.ADAM_FRACTION},
            "inputs": input_checksums(work)}
    meta["subject"] = _sketch_stage(their_stage(work / "theirs" / "subject-fp32", "subject"), "subject", tensors)
    motion = their_stage(work / "theirs" / "motion-fp32", "motion")
    meta["motion"] = _sketch_stage(motion, "motion", tensors)
    sample = their_sample(work / "theirs" / "sample" / "sample.safetensors")
    for k in ("noise", "latents", "video"):
        tensors[f"sample.{k}"] = R.sketch(sample[k])
    meta["sample"] = sample["meta"]
    C.save(path, tensors, meta)
    return path


def input_checksums(exchange: Path) -> dict:
    """A float checksum of each input the fixture rebuilds from seeds (models, prompts, LoRAs)."""
    out = {}
    for rel in ("models/transformer.safetensors", "models/vae.safetensors", "prompts.safetensors",
                "loras/subject.safetensors", "loras/motion.safetensors"):
        tensors, _ = C.load(exchange / rel)
        out[rel] = sum(float(v.double().abs().sum()) for v in tensors.values())
    return out


def _their_stage_from(meta: dict, tensors: dict, prefix: str) -> dict:
    samples = [(s["meta"], {k: tensors[f"{prefix}.sample{i}.{k}"] for k in s["tensors"]}, s["data_id"])
               for i, s in enumerate(meta["samples"])]
    steps = [{**{k: v for k, v in st.items() if k not in ("grads", "after")},
              "grads": {n: tensors[f"{prefix}.step{k}.grads.{n}"] for n in st["grads"]},
              "after": {n: tensors[f"{prefix}.step{k}.after.{n}"] for n in st["after"]}}
             for k, st in enumerate(meta["steps"])]
    init = {name: C.initial_value(name, shape) for name, shape in meta["init"].items()}
    from ours import ADAPTERS, their_name_to_ours

    adapters = ADAPTERS["subject" if prefix == "subject" else "motion"]
    return {"samples": samples, "steps": steps, "init": init, "active": meta["active"], "reference_flows": None,
            "init_ours": {their_name_to_ours(k, adapters): v for k, v in init.items() if "lora_" in k}}


def prepare_inputs(work: Path, path: Path = FIXTURE) -> None:
    """The fixture run's inputs, rebuilt from seeds into `work`, checked against the fixture's checksums."""
    import ours

    _, meta = C.load(path)
    ours.prepare(work, meta["info"])
    checks = input_checksums(work)
    for rel, value in meta["inputs"].items():
        if abs(checks[rel] - value) > 1e-6 * max(1.0, abs(value)):
            raise RuntimeError(f"the inputs rebuilt from seeds differ from the fixture's ({rel}: {checks[rel]} vs "
                               f"{value}): torch's random numbers changed; regenerate the fixture with "
                               f"scripts/check_official_parity.py --write-fixture")


def run_fixture(work: Path, stages=("subject", "motion", "sample"), path: Path = FIXTURE,
                prepared: bool = False) -> list[R.Row]:
    """Our side on the fixture; returns the rows (theirs from the fixture, ours sketched the same way). `work`
    gets the inputs (unless `prepared`: prepare_inputs already put them there) and a new run folder per call."""
    import tempfile

    import ours

    tensors, meta = C.load(path)
    info = meta["info"]
    if not prepared:
        prepare_inputs(work, path)
    runs = Path(tempfile.mkdtemp(prefix="ours-", dir=work))
    tensors = {k: v.as_subclass(R.Sketch) for k, v in tensors.items()}
    rows = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: a second thread costs more in synchronisation than it gains
    try:
        if "subject" in stages:
            th = _their_stage_from(meta["subject"], tensors, "subject")
            rows += compare_subject(th, ours.run_subject(work, th, runs / "subject"))
        if "motion" in stages:
            th = _their_stage_from(meta["motion"], tensors, "motion")
            result = ours.run_motion(work, th, runs / "motion", info, phase1_only=True)
            rows += compare_motion_phase1(th, result)
        if "sample" in stages:
            th = {k: tensors[f"sample.{k}"] for k in ("noise", "latents", "video")} | {"meta": meta["sample"]}
            result = ours.run_sample(work, meta["sample"], info, trained=None)
            rows += compare_sample(th, result)
    finally:
        torch.set_num_threads(threads)
    return rows


if __name__ == "__main__":  # python scripts/official_parity/fixture.py: the CI test's rows, printed
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        R.print_table(run_fixture(Path(tmp)))
    print(json.dumps({k: C.load(FIXTURE)[1][k] for k in ("commit", "date")}))
