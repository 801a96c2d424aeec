"""What an experiment is made of: its methods (the rows of the tables), its settings, its jobs and what each
kind of job costs (the plan's estimates and the ETA read `JOB_COSTS`)."""

from __future__ import annotations

from dataclasses import dataclass, field

STAGES = ("train", "generate", "evaluate")
STAGE_OF = {"subject": "train", "motion": "train", "generate": "generate", "evaluate": "evaluate"}


# ---------------------------------------------------------------- the cost of a job
@dataclass(frozen=True)
class JobCost:
    """Seconds of one job on one H200 at the Wan2.1-1.3B size: `fixed` + `per_unit` x units, scaled by
    the job's token count against the reference size (linear in tokens: an approximation)."""

    per_unit: float
    fixed: float
    unit: str
    reference_tokens: int  # tokens of the size `per_unit` was measured at
    measured: bool  # False: an estimate, to be replaced by benchmarks/bench_multigpu.py --costs
    source: str


# The one table of per-job costs (`--dry-run` and the ETA read it). Update it from
# `benchmarks/bench_multigpu.py --costs` (benchmarks/README.md).
JOB_COSTS: dict[str, JobCost] = {
    "subject": JobCost(0.506, 60.0, "training step", 1024, True,
                       "benchmarks/README.md: paper-recipe subject step (gradient checkpointing), 512x512, H200 "
                       "(official: 0.79 s at batch 2); fixed = model load + caching, estimated"),
    "motion": JobCost(1.73, 90.0, "training step", 11700, True,
                      "benchmarks/README.md: paper-recipe MoRA motion step, 49x576x320, H200 (official: 3.67 s "
                      "a step of batch 2, measured with fp32 LoRAs); fixed estimated"),
    "motion_no_mora": JobCost(0.69, 60.0, "training step", 11700, True,
                              "benchmarks/README.md: --no-mora motion step, 49x576x320, H200; fixed estimated"),
    "generate": JobCost(0.59, 20.0, "denoising step (with CFG)", 20280, False,
                        "benchmarks/README.md: merged LoRAs, 49x832x480, H200 (0.48 s with --compile); fixed "
                        "(load, prompt, decode) estimated"),
    "evaluate": JobCost(0.0, 20.0, "video", 1, False, "estimate: nine metrics on one 49-frame video"),
}


def training_tokens(kind: str, args) -> int:
    if kind == "subject":
        return (args.resolution // 16) ** 2
    return ((args.frames - 1) // 4 + 1) * (args.height // 16) * (args.width // 16)


def job_seconds(cost_key: str, units: float, tokens: int) -> float:
    c = JOB_COSTS[cost_key]
    return c.fixed + c.per_unit * units * tokens / c.reference_tokens


# ---------------------------------------------------------------- methods
@dataclass(frozen=True)
class Backbone:
    """The commands that train a backbone's LoRAs, and the generate flags that select it. A U-Net row is a
    Method with backbone="unet" once a `Backbone` entry for it exists."""

    subject_command: str = "train-subject"
    motion_command: str = "train-motion"
    generate_args: tuple[str, ...] = ()


BACKBONES: dict[str, Backbone] = {"dit": Backbone()}

# LoRA variants: the trainer flags that make them
SUBJECT_VARIANTS = {"sura": (), "plain": ("--no-sura",)}
MOTION_VARIANTS = {"mora": (), "plain": ("--no-mora",)}


@dataclass(frozen=True)
class Method:
    """One row of the tables: which LoRAs (None: none), how they are combined, and which tables show it."""

    subject: str | None
    motion: str | None
    injection: str = "sparse"
    tables: tuple[str, ...] = ("table1",)
    backbone: str = "dit"
    label: str = ""


METHODS: dict[str, Method] = {
    "wan": Method(None, None, tables=("table1",), label="Wan2.1 (no LoRA)"),
    # the naive combination: LoRAs trained without SuRA and MoRA, both on every layer at every step
    "wan_loras": Method("plain", "plain", injection="dense", tables=("table1",), label="Wan2.1 + LoRAs (dense)"),
    "smrabooth": Method("sura", "mora", tables=("table1", "ablation"), label="SMRABooth"),
    "no_sura": Method("plain", "mora", tables=("ablation",), label="w/o SuRA"),
    "no_mora": Method("sura", "plain", tables=("ablation",), label="w/o MoRA"),
}
TABLES = {"table1": "Table 1: methods", "ablation": "Ablation"}


# ---------------------------------------------------------------- settings
@dataclass
class ReproduceConfig:
    data: str
    model: str
    out: str
    methods: tuple[str, ...] = ("wan", "wan_loras", "smrabooth", "no_sura", "no_mora")
    seeds: tuple[int, ...] = (0,)
    recipe: str | None = None  # forwarded as --recipe to the trainers and generate when they have it
    prompts: str | None = None  # JSON list of {subject, motion, prompt} (`smrabooth prompts`); None: as it builds
    per_pair: int = 1
    backgrounds: str | None = None
    exclude: str | None = None
    subject_args: str = ""
    motion_args: str = ""
    generate_args: str = ""
    evaluate_args: str = ""
    offline: bool = False


@dataclass
class Job:
    kind: str  # subject | motion | generate | evaluate
    name: str  # its output, relative to the output folder
    spec: dict  # what defines it (hashed into the digest), JSON-able
    needs: tuple[str, ...] = ()
    seconds: float = 0.0  # estimated
    extra: dict = field(default_factory=dict)  # how to run it (not part of the digest)

    @property
    def stage(self) -> str:
        return STAGE_OF[self.kind]
