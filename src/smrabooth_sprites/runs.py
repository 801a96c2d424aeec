"""The demo and the bench as functions: `make_demo` (one case: the full method and the no-LoRA baseline,
scored, with a report) and `run_bench` (cases x variants x seeds, scored into a table). The command line
(cli.py) turns flags into these calls."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from .experiment import (
    VARIANTS,
    Case,
    ExperimentSettings,
    Variant,
    experiment_header,
    run_case,
    run_subject_stills,
)
from .report import RUN_FILE, finished_rows, write_bench_results, write_demo_report

PARTS = "parts"  # <out>/parts/<case>/: one process's results (run.json, results.json, log.txt) with --jobs


def _print(message: str) -> None:
    print(message, flush=True)


def make_demo(settings: ExperimentSettings, case: Case, seed: int, out: Path,
              log: Callable[[str], None] = _print) -> dict:
    """Train both LoRAs of `case`, generate it with them (sparse injection) and without (same seed), score
    both, and write into `out` (an empty folder): both LoRAs, result/baseline mp4 and gif, the reference
    motion, frames.png, metrics.json and report.html. Returns metrics.json's content."""
    from PIL import Image

    from smrabooth.lora.files import run_lora_files
    from smrabooth.video import frame_strip, write_gif, write_video

    from .scoring import load_reference

    start = time.time()
    (out / RUN_FILE).write_text(json.dumps({"command": "demo", "case": case.name}) + "\n")
    variants = [VARIANTS["full"], VARIANTS["base"]]
    res = run_case(settings, case, variants, [seed], keep_frames=True, log=log)
    rows = {r["variant"]: r for r in res.rows}
    work = Path(settings.out) / "cases" / case.name
    for kind, run in (("subject", "subject_sura"), ("motion", "motion_mora")):  # one file, or one per A14B expert
        for path in run_lora_files(work / "loras" / run, kind):
            shutil.copy(path, out / path.name)
    for name, variant in (("result", "full"), ("baseline", "base")):
        frames = res.videos[(variant, seed)]
        write_video(frames, out / f"{name}.mp4", fps=settings.fps)
        write_gif(frames, out / f"{name}.gif", fps=settings.fps)
    ref = load_reference(work / "subject", work / "motion", case.background)
    write_gif(ref.motion_frames[0], out / "reference_motion.gif", fps=settings.fps)
    Image.fromarray(frame_strip([ref.motion_frames[0], res.videos[("full", seed)],
                                 res.videos[("base", seed)]])).save(out / "frames.png")
    timings = {"total": round(time.time() - start, 1)}
    for kind in ("subject_sura", "motion_mora"):
        t = work / "loras" / kind / "time.json"
        if t.is_file():
            timings[f"train_{kind}"] = round(json.loads(t.read_text())["seconds"], 1)
    timings.update({f"generate_{r['variant']}": r["gen_seconds"] for r in res.rows})
    header = experiment_header(settings, [case], variants, [seed])
    metrics = {"case": case.name, "prompt": case.prompt, "result": rows["full"], "baseline": rows["base"],
               "timings_s": timings, **header}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    write_demo_report(out / "report.html", case, header["settings"], rows["full"], rows["base"], ref.images,
                      out / "reference_motion.gif", out / "result.gif", out / "baseline.gif", timings)
    return metrics


def run_bench(settings: ExperimentSettings, cases: list[Case], variants: list[Variant], seeds: list[int],
              out: Path, resume: bool = False, subject_stills: bool = True,
              log: Callable[[str], None] = _print) -> dict:
    """Every case with every variant and seed, into `out` (prepared: empty, or an earlier call's folder with
    `resume`, whose LoRAs, videos and scores made with the same settings are kept). The results files are
    rewritten after every case, so a stopped run keeps what it finished. Returns write_bench_results'."""
    from .bundle import load_bundle
    from .scoring import SpriteScorer

    (out / RUN_FILE).write_text(json.dumps({"command": "bench sprites", "cases": [c.name for c in cases],
                                            "variants": [v.name for v in variants]}) + "\n")
    header = experiment_header(settings, cases, variants, seeds)
    rows, trained, still_rows = [], {}, []
    done = finished_rows(out, header) if resume else {}
    done_stills = finished_rows(out, header, "still_rows", "lora", "image") if resume else {}
    # the subject LoRAs the variants use, and none (the floor), each alone in a still
    still_kinds = [*dict.fromkeys(v.subject for v in variants if v.subject), None] if subject_stills else []
    models = load_bundle(settings.model, device=settings.device)
    scorer = SpriteScorer(models.dinov2, models.searaft, device=settings.device,
                          with_motion_fidelity=settings.motion_fidelity)
    for i, case in enumerate(cases):
        log(f"case {i + 1}/{len(cases)}: {case.name} ('{case.prompt}')")
        res = run_case(settings, case, variants, seeds, models=models, scorer=scorer, log=log,
                       done=done.get(case.name))
        rows += res.rows
        trained[case.name] = res.trained
        if still_kinds:
            still_rows += run_subject_stills(settings, case, still_kinds, seeds, models, scorer, log=log,
                                             done=done_stills.get(case.name))
        table = write_bench_results(out, header, rows, trained, still_rows)
    return table


def _bench_part(settings: dict, case: dict, variants: list[str], seeds: list[int], part: str, resume: bool,
                subject_stills: bool, threads: int) -> dict:
    """One case of a parallel bench, in its own process: its results go to `part` (its log to part/log.txt), its
    LoRAs and videos to the shared <out>/cases/<case>/ as in a serial run."""
    import contextlib
    import sys

    import torch

    from .report import prepare_out

    torch.set_num_threads(threads)
    part_dir = prepare_out(part, overwrite=False, resume=True)
    with open(part_dir / "log.txt", "a") as log_file, contextlib.redirect_stdout(log_file), \
            contextlib.redirect_stderr(log_file):
        run_bench(ExperimentSettings(**settings), [Case(**case)], [VARIANTS[v] for v in variants], seeds,
                        part_dir, resume=resume, subject_stills=subject_stills, log=lambda m: print(m, flush=True))
        sys.stdout.flush()
    return json.loads((part_dir / "results.json").read_text())


def run_bench_parallel(settings: ExperimentSettings, cases: list[Case], variants: list[Variant], seeds: list[int],
                       out: Path, jobs: int, resume: bool = False, subject_stills: bool = True,
                       log: Callable[[str], None] = _print) -> dict:
    """`run_bench` with one process per case, `jobs` at a time (several processes share one GPU well: the
    lab's models are small, a step is launch-bound). Each process writes <out>/parts/<case>/ (results and
    log.txt) and the shared <out>/cases/<case>/; the merged results are written to `out` as `run_bench` writes
    them, after every finished case. CPU threads are split between the processes."""
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    from smrabooth.errors import SmraboothError

    (out / RUN_FILE).write_text(json.dumps({"command": "bench sprites", "cases": [c.name for c in cases],
                                            "variants": [v.name for v in variants], "jobs": jobs}) + "\n")
    header = experiment_header(settings, cases, variants, seeds)
    threads = max(1, (os.cpu_count() or 1) // jobs)
    names = [v.name for v in variants]
    parts: dict[str, dict] = {}
    start = time.time()
    table: dict = {}
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"), max_tasks_per_child=1) as pool:
        pending = {pool.submit(_bench_part, asdict(settings), asdict(case), names, seeds, str(out / PARTS / case.name),
                               resume, subject_stills, threads): case for case in cases}
        log(f"{len(cases)} cases in {jobs} processes ({threads} CPU threads each); logs in {out / PARTS}/<case>/log.txt")
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                case = pending.pop(future)
                try:
                    parts[case.name] = future.result()
                except Exception as e:  # noqa: BLE001  (any failure of a part: its own log has the traceback)
                    raise SmraboothError(f"case {case.name} failed ({type(e).__name__}: {e}); see "
                                         f"{out / PARTS / case.name / 'log.txt'}") from None
                log(f"case {case.name} done ({len(parts)}/{len(cases)}, {time.time() - start:.0f} s)")
                ordered = [parts[c.name] for c in cases if c.name in parts]
                table = write_bench_results(out, header, [r for p in ordered for r in p["rows"]],
                                            {c: t for p in ordered for c, t in p["trained"].items()},
                                            [r for p in ordered for r in p.get("still_rows", [])])
    return table
