"""The paper's whole experiment as one resumable command (`smrabooth reproduce`, docs/reproduce.md).

Given a dataset root, a model, the methods to compare and the seeds, `plan` lists every job:

    subject   one subject LoRA per subject and LoRA variant the methods use  (train-subject)
    motion    one motion LoRA per motion and LoRA variant                     (train-motion)
    generate  one video per method, test prompt and seed                     (generate)
    evaluate  the metrics of one video                                        (evaluate)

and `run` runs the jobs that are not done yet, stage by stage (training, generation, evaluation), then
writes Table 1 and the ablation table. Each job's settings go through the real command-line parser of
its command (`--subject-args "--steps 300"` is what `smrabooth train-subject --steps 300` would get),
so a job is exactly what the same command by hand would do.

Resuming: a finished job writes `<output>.done.json` holding a digest of everything that defines it
(settings, model files, data files, and the content digests of the outputs it read) and the SHA-256
of each output file. A job counts as done only when its marker's digest matches and its outputs still
hash to what the marker says; anything else runs again (a killed training job continues from its last
checkpoint). A retrained LoRA changes the digest of every video made with it, so those are remade.

Spreading: one worker per GPU, started by a process launcher (`torchrun --nproc-per-node N -m smrabooth
reproduce ...` or `accelerate launch`); each stage's pending jobs are split among the workers by
estimated cost (longest first, to the least loaded), and the workers wait for each other between
stages. `--shard i/n` takes a fixed share of every stage (for cluster array jobs); whatever a shard
cannot run yet because another shard has not made its inputs is reported, and a later call runs it.
The tables are written by whichever call finds every evaluation done (`--stage report` forces that).

The package: `jobs` (methods, settings, jobs and their costs), `digests` (what defines a job, done markers),
`plan` (every job, resolved: each carries the settings its command resolved from the flags, so running it
re-parses nothing), `runner` (workers, stages, progress) and `tables` (Table 1 and the ablation).
"""

from .digests import check_done, file_sha, folder_digest, job_digest, marker_path, model_stamp, scan, write_marker
from .jobs import (
    BACKBONES,
    JOB_COSTS,
    METHODS,
    MOTION_VARIANTS,
    STAGE_OF,
    STAGES,
    SUBJECT_VARIANTS,
    TABLES,
    Job,
    JobCost,
    Method,
    ReproduceConfig,
    job_seconds,
)
from .plan import dry_run_text, makespan, parse_shard, plan, read_cases, save_plan, shard_jobs, split_by_cost
from .runner import Progress, Runner, Worker, run
from .tables import write_tables

__all__ = ["BACKBONES", "JOB_COSTS", "METHODS", "MOTION_VARIANTS", "STAGES", "STAGE_OF", "SUBJECT_VARIANTS", "TABLES",
           "Job", "JobCost", "Method", "Progress", "ReproduceConfig", "Runner", "Worker", "check_done", "dry_run_text",
           "file_sha", "folder_digest", "job_digest", "job_seconds", "makespan", "marker_path", "model_stamp",
           "parse_shard", "plan", "read_cases", "run", "save_plan", "scan", "shard_jobs", "split_by_cost",
           "write_marker", "write_tables"]
