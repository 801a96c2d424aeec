"""What an experiment is made of: its methods (the rows of the tables), its settings, its jobs and what each
kind of job costs (the plan's estimates and the ETA read `JOB_COSTS`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..config import setting
from ..recipes import DEFAULT_RECIPE

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
def _stage_args(command: str):
    return setting("", f"flags for every `smrabooth {command}` job, as one quoted string", metavar="ARGS")


@dataclass
class ReproduceConfig:
    """The settings of an experiment (`smrabooth reproduce` has a flag for each, made from these fields)."""

    data: str = setting("", "dataset root: subject_customized/<name>/ and motion_customized/video/<motion>/ (or "
                        "folders of subject and motion folders)", required=True)
    model: str = setting("", "text-to-video model (Wan2.1, Wan2.2): hub id or local folder", required=True)
    out: str = setting("", "experiment folder (plan.json, loras/, videos/, scores/, tables/)", required=True)
    methods: tuple[str, ...] = setting(("wan", "wan_loras", "smrabooth", "no_sura", "no_mora"),
                                       f"comma-separated rows, from {','.join(METHODS)}")
    seeds: tuple[int, ...] = setting((0,), "comma-separated generation seeds")
    # forwarded as --recipe to the trainers and generate when they have it
    recipe: str | None = setting(None, "training and sampling recipe, forwarded to the trainers and generate (none: "
                                 f"theirs, {DEFAULT_RECIPE})")
    prompts: str | None = setting(None, "test prompts: JSON from `smrabooth prompts` (none: built from the data)")
    per_pair: int = setting(1, "prompts per subject-motion pair when building them")
    backgrounds: str | None = setting(None, "scenes for built prompts, one per line")
    exclude: str | None = setting(None, "subject,motion pairs to leave out, one per line")
    subject_args: str = _stage_args("train-subject")
    motion_args: str = _stage_args("train-motion")
    generate_args: str = _stage_args("generate")
    evaluate_args: str = _stage_args("evaluate")
    offline: bool = setting(False, "never contact the hub (passed to every job)")

    def validate(self) -> ReproduceConfig:
        """Seeds and methods as the command line writes them (0,1,2) become tuples; numbers are checked. The
        methods' names, the recipe and the stages' flags are checked by `plan`, which resolves every job."""
        from ..errors import SmraboothError
        from ..validation import check_number

        for name in ("data", "model", "out"):
            if not getattr(self, name):
                raise SmraboothError(f"--{name} is required")
        if isinstance(self.methods, str):
            self.methods = tuple(m.strip() for m in self.methods.split(",") if m.strip())
        if isinstance(self.seeds, str):
            try:
                self.seeds = tuple(int(s) for s in self.seeds.split(",") if s.strip())
            except ValueError:
                raise SmraboothError(f"--seeds {self.seeds!r}: expected comma-separated integers, e.g. 0,1,2") from None
        if not self.seeds:
            raise SmraboothError("--seeds is empty")
        for seed in self.seeds:
            check_number("--seeds", seed, 0, 2**63 - 1, integer=True)
        check_number("--per-pair", self.per_pair, 1, 1000, integer=True)
        return self


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
