"""Running the plan: stage by stage, each worker its share, in this process (the generation pipeline and the metric
models kept between jobs); a killed run resumes from the markers and the trainers' checkpoints."""

from __future__ import annotations

import json
import os
import shlex
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import SmraboothError
from .digests import marker_path, scan, write_marker
from .jobs import STAGES, Job, ReproduceConfig
from .plan import format_seconds, parse_shard, plan, save_plan, shard_jobs, split_by_cost
from .tables import write_tables


# ---------------------------------------------------------------- workers
@dataclass
class Worker:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls) -> Worker:
        """The process launcher's (torchrun / accelerate launch) rank and world size; one worker without one."""
        return cls(int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1")),
                   int(os.environ.get("LOCAL_RANK", "0")))

    def start(self) -> None:
        if self.world > 1:
            import datetime

            import torch.distributed as dist

            if not dist.is_initialized():  # gloo: only barriers pass between workers; stages can take days
                dist.init_process_group("gloo", timeout=datetime.timedelta(days=30))

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()

    def stop(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()

    def device(self) -> str | None:
        """This worker's GPU when several workers share a machine; None: the command's own choice."""
        import torch

        return f"cuda:{self.local_rank}" if torch.cuda.is_available() and self.world > 1 else None

    def model_settings(self, settings: dict) -> dict:
        """A job's model flags (cli.common.model_settings) on this worker's device."""
        return {**settings, "device": self.device() or settings.get("device")}


class Runner:
    """Runs jobs in this process, keeping the generation pipeline and the metric models between jobs."""

    def __init__(self, cfg: ReproduceConfig, out: Path, worker: Worker, log=print):
        self.cfg, self.out, self.worker, self.log = cfg, out, worker, log
        self.pipe_key, self.pipe = None, None
        self.evaluators: dict[str, object] = {}

    def free(self) -> None:
        import gc

        import torch

        self.pipe_key, self.pipe = None, None
        self.evaluators.clear()
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def run(self, job: Job, digest: str, done: dict[str, dict]) -> None:
        getattr(self, f"run_{'training' if job.kind in ('subject', 'motion') else job.kind}")(job, digest, done)

    def run_training(self, job: Job, digest: str, done) -> None:
        from ..cli import main
        from ..cli.common import model_argv
        from ..config import to_dict, write_yaml
        from ..train.common import list_checkpoints
        from ..train.distributed import single_process

        run_dir = self.out / job.name
        started = run_dir.with_name(run_dir.name + ".started.json")
        try:
            same = started.is_file() and json.loads(started.read_text()).get("digest") == digest
        except (OSError, ValueError, AttributeError, RecursionError):  # damaged: the job starts over
            same = False
        if same and list_checkpoints(run_dir):
            mode = ["--resume"]  # a killed run continues from its last checkpoint
        else:
            mode = ["--overwrite"] if run_dir.exists() else []
        run_dir.parent.mkdir(parents=True, exist_ok=True)
        started.write_text(json.dumps({"digest": digest}) + "\n")
        # the settings the plan resolved, as a --config file: the command runs them, it re-parses no job argv
        settings = run_dir.with_name(run_dir.name + ".config.yaml")
        write_yaml({k: v for k, v in to_dict(job.extra["config"]).items() if k != "out"}, settings)
        argv = [job.spec["command"], "--config", str(settings), *model_argv(self.worker.model_settings(
            job.extra["model"])), "--out", str(run_dir), "--quiet", *mode]
        self.free()
        with single_process():  # this worker's own job, not a share of a data-parallel one
            rc = main(argv)
        self.free()
        if rc:
            raise SmraboothError(f"job {job.name} failed ({shlex.join(argv)} exited with {rc}; its error is above)")

    def pipeline(self, settings: dict):
        """The pipeline of a job's model flags (cli.common.model_settings), kept while jobs share them."""
        from types import SimpleNamespace

        from ..cli.common import load_pipeline_from_args

        key = json.dumps(settings, sort_keys=True)
        if self.pipe_key != key:
            self.free()
            self.pipe = load_pipeline_from_args(SimpleNamespace(**settings))
            self.pipe.set_progress_bar_config(disable=True)
            self.pipe_key = key
        return self.pipe

    def run_generate(self, job: Job, digest: str, done) -> None:
        from ..lora.files import load_lora, run_lora_files
        from ..sampling import generate
        from ..video import write_video

        path = self.out / job.name
        path.parent.mkdir(parents=True, exist_ok=True)
        config = job.extra["config"]  # resolved by the plan
        loras = {k: run_lora_files(self.out / n, k) for k, n in job.extra["loras"].items()}
        weights = {k: [load_lora(p) for p in paths] for k, paths in loras.items()}
        pipe = self.pipeline(self.worker.model_settings(job.extra["model"]))
        result = generate(pipe, config, weights.get("subject"), weights.get("motion"), progress=False,
                          lora_paths={k: [str(p) for p in paths] for k, paths in loras.items()})
        tmp = path.with_name(f".{path.stem}.tmp.mp4")
        write_video(result.frames, tmp, fps=config.fps)
        os.replace(tmp, path)

    def run_evaluate(self, job: Job, digest: str, done) -> None:
        from ..metrics.runner import EvalItem, Evaluator

        path = self.out / job.name
        path.parent.mkdir(parents=True, exist_ok=True)
        key = json.dumps(job.spec["settings"], sort_keys=True) + json.dumps(job.spec["metrics"])
        if key not in self.evaluators:
            self.free()
            self.evaluators[key] = Evaluator(job.extra["settings"], job.spec["metrics"],
                                             warn=lambda msg: self.log(f"warning: {msg}"))
        ev = self.evaluators[key]
        item = EvalItem(job.extra["method"], self.out / job.extra["video"], job.extra["prompt"],
                        [Path(p) for p in job.extra["subject_images"]], Path(job.extra["reference_video"]))
        row = ev.run([item])[0]
        row["video"] = job.extra["video"]
        row["skipped"] = dict(ev.skipped)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(row) + "\n")
        os.replace(tmp, path)


class Progress:
    """One line per finished job, with the ETA of the whole plan: the estimated seconds of every job not yet
    done (a marker on disk, whoever ran it), scaled by how this process's jobs compared with their estimates,
    over the workers."""

    def __init__(self, out: Path, jobs: list[Job], workers: int, log=print):
        self.out, self.jobs, self.workers, self.log = out, jobs, workers, log
        self.spent, self.estimated = 0.0, 0.0

    def finished(self, job: Job, seconds: float) -> None:
        self.spent += seconds
        self.estimated += job.seconds
        left = [j for j in self.jobs if not marker_path(self.out, j).is_file()]
        ratio = self.spent / self.estimated if self.estimated else 1.0
        eta = sum(j.seconds for j in left) * ratio / self.workers
        self.log(f"[{len(self.jobs) - len(left)}/{len(self.jobs)}] {job.kind} {job.name} in {seconds:.1f}s "
                 f"(estimated {job.seconds:.0f}s); plan ETA {format_seconds(eta)}")


def _print(line: str) -> None:
    print(line, flush=True)


def run(cfg: ReproduceConfig, stage: str = "all", shard: str | None = None, worker: Worker | None = None,
        log=_print) -> int:
    """Run the jobs of `stage` (or all) in this shard; write the tables when every evaluation is done.
    Returns 0, or 3 when some jobs wait on other shards' outputs."""
    out = Path(cfg.out)
    worker = worker or Worker.from_env()
    jobs = plan(cfg)
    mine = shard_jobs(jobs, parse_shard(shard))
    worker.start()
    if worker.rank == 0:
        save_plan(jobs, out / "plan.json")
    runner = Runner(cfg, out, worker, log)
    progress = Progress(out, mine, worker.world, log)
    blocked: list[str] = []
    try:
        for st in {"all": STAGES, "report": ()}.get(stage, (stage,)):
            done, digests = scan(out, jobs)
            todo = [j for j in mine if j.stage == st and j.name not in done]
            ready = [j for j in todo if j.name in digests]
            blocked += [j.name for j in todo if j.name not in digests]
            share = split_by_cost(ready, worker.world)[worker.rank]
            worker.barrier()  # every worker has read the state before any writes to it
            for job in share:
                t0 = time.time()
                runner.run(job, digests[job.name], done)
                seconds = time.time() - t0
                write_marker(out, job, digests[job.name], seconds)
                progress.finished(job, seconds)
            runner.free()
            worker.barrier()
        code = 0
        if worker.rank == 0:
            done, _ = scan(out, jobs)
            missing = [j for j in jobs if j.kind == "evaluate" and j.name not in done]
            if not missing:
                for path in write_tables(cfg, out, jobs):
                    log(f"wrote {path}")
            elif stage == "report":  # nothing to write the tables from: an error, not a silent success
                raise SmraboothError(f"--stage report: {len(missing)} of {sum(j.kind == 'evaluate' for j in jobs)} "
                                     f"evaluations are not done (e.g. {missing[0].name}); run the other stages (of "
                                     "every shard) first")
            elif blocked:
                log(f"{len(missing)} of {sum(j.kind == 'evaluate' for j in jobs)} evaluations are not done "
                    f"(e.g. {missing[0].name}): the tables are written once every shard has finished")
        if blocked:
            log(f"{len(blocked)} job(s) wait for other shards' outputs (e.g. {blocked[0]}): run this shard again "
                "once the earlier stages of every shard are done")
            code = 3
        return code
    finally:
        worker.stop()
