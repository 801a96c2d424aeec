"""What the subject and motion trainers share: the run folder, LoRA setup, timestep sampling,
checkpoints with exact resume, logging, and the optimisation loop.

A run folder holds
    config.yaml             every setting, resolved
    log.jsonl               one line per step: step, each loss term, lr, seconds
    checkpoints/step-N/     lora.safetensors (lora-<adapter>.safetensors for a second LoRA),
                            <module>.safetensors, optimizer.pt, rng.safetensors, state.json; written to
                            a temporary folder and renamed, so a checkpoint folder is complete or absent
    validation/step-N.mp4   when asked
    timings.json            seconds per phase of the last call: captions, precompute, setup, loop, save
    <final>.safetensors     the LoRA, in diffusers format, at the end
All randomness of training (which example, which sigma, which noise) comes from one CPU
`torch.Generator` whose state is checkpointed, so a resumed run continues exactly.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import time
import warnings
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .. import run_folder
from ..errors import SmraboothError
from ..logs import get_logger
from ..lora.files import LoraWeights, base_model_info, lora_state_dict_from_peft, save_lora
from ..lora.targets import module_suffixes
from .distributed import SINGLE, DataParallel
from .lock import acquire as acquire_lock
from .lock import check_unlocked
from .lock import release as release_lock
from .state import (  # noqa: F401  (JsonlLog, read_log, numpy_rng_state, ...: importable from here as before)
    JsonlLog,
    atomic_path,
    autocast_enabled,
    numpy_rng_state,
    read_log,
    rng_state,
    set_numpy_rng_state,
    set_rng_state,
)

log = get_logger(__name__)

CHECKPOINT_RE = re.compile(r"^step-(\d+)$")
INPUTS_FILE = "inputs.json"  # the absolute path and SHA-256 of every data file the run read

# Command-line help of the settings both trainers have (SubjectTrainConfig, MotionTrainConfig); a trainer's
# own settings carry their help in their field (config.setting).
TRAIN_SETTING_HELP = {
    "out": "run folder (config.yaml, log.jsonl, checkpoints/, the LoRA)",
    "recipe": "the method's defaults (docs/method.md): every setting not given comes from this recipe",
    "steps": "optimizer steps",
    "rank": "LoRA rank",
    "alpha": "LoRA alpha (the LoRA's scale is alpha / rank)",
    "lr": "AdamW learning rate",
    "weight_decay": "AdamW weight decay",
    "max_grad_norm": "gradient-norm clip (0: none)",
    "layer_types": "comma list of the layer types the LoRA is trained on (q,k,v,o,ffn.0,ffn.2)",
    "shift": "timestep shift of the training sigma table",
    "timestep_weight": "the flow loss's weight per timestep: none, or bell (the authors' w(t); docs/method.md)",
    "warmup_steps": "the first N steps run at lr x --warmup-factor (torch's ConstantLR)",
    "warmup_factor": "the learning rate's factor during --warmup-steps",
    "lora_dtype": "dtype of the LoRA weights and their AdamW states: fp32, or bf16 (the authors': peft casts their "
                  "adapters to the bf16 model, and updates below bf16's resolution round away)",
    "timestep_rounding": "none, or bf16: the drawn timestep rounded to bf16 before the noise, the model and the "
                         "weight use it (the authors')",
    "resize_filter": "the filter that resizes images and frames to the training size (bilinear: the authors')",
    "seed": "seed of the LoRA's initialisation and of every training draw",
    "gradient_checkpointing": "recompute the transformer blocks in backward (less memory; off: faster)",
    "compile": "torch.compile the transformer blocks (GPU)",
    "mixed_precision": "auto: bf16 autocast on CUDA; no: no autocast (bf16 weights, fp32 LoRA math)",
    "checkpoint_every": "steps between checkpoints",
    "batch_size": "samples per process per optimizer step, computed one after the other (under accelerate launch "
                  "or torchrun the effective batch is processes x batch size x accumulation; docs/multi-gpu.md)",
    "gradient_accumulation": "times --batch-size per process per optimizer step",
    "validate_every": "render a validation video every N steps (0: never)",
    "validation_prompt": "prompt of the validation videos",
    "validation_steps": "denoising steps of a validation video",
    "save_dtype": "dtype of the LoRA file",
    "cache_dir": "where precomputed latents/features go (default ~/.cache/smrabooth, or SMRABOOTH_CACHE)",
}


# ---------------------------------------------------------------- run folder
class PhaseTimes:
    """Wall seconds per phase of a training call, written to timings.json: where a user's time goes."""

    def __init__(self):
        self.last = time.perf_counter()
        self.seconds: dict[str, float] = {}

    def mark(self, phase: str) -> None:
        """The time since the previous mark is `phase`'s."""
        now = time.perf_counter()
        self.seconds[phase] = round(now - self.last, 3)
        self.last = now

    def write(self, run_dir: Path) -> None:
        (Path(run_dir) / "timings.json").write_text(json.dumps({**self.seconds, "total": round(sum(
            self.seconds.values()), 3)}) + "\n")


def list_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    folder = Path(run_dir) / "checkpoints"
    if not folder.is_dir():
        return []
    found = []
    for p in folder.iterdir():
        m = CHECKPOINT_RE.match(p.name)
        if m and (p / "state.json").is_file():
            found.append((int(m.group(1)), p))
    return sorted(found)


def _entries(out: Path) -> list[Path]:
    """What a run folder holds, its lock and marker aside."""
    return run_folder.entries(out)


# Every entry a trainer writes into its run folder (module docstring): what --overwrite may replace.
RUN_ENTRIES = {"config.yaml", "log.jsonl", "checkpoints", "validation", "timings.json", "parallel.json", INPUTS_FILE,
               *(f"{kind}_lora{expert}.safetensors" for kind in ("subject", "motion", "spatial")
                 for expert in ("", "_high", "_low")),  # one file, or one per Wan2.2 A14B expert
               "projector.safetensors", "raa.safetensors",
               "time.json"}  # the SMRA-Sprites lab's training time, written beside a run it trained


def trainer_wrote(path: str) -> bool:
    """Whether a file of a run folder (a path relative to it) is one a trainer writes: an entry of RUN_ENTRIES, a
    file of a checkpoint step-N/ or a validation video; what --overwrite of an unfinished run may replace."""
    top, _, rest = path.partition("/")
    if top not in RUN_ENTRIES:
        return False
    if top == "checkpoints":  # save_checkpoint's files
        return re.fullmatch(r"step-\d+/([\w.-]+\.safetensors|optimizer\.pt|state\.json)", rest) is not None
    if top == "validation":
        return re.fullmatch(r"step-\d+\.mp4", rest) is not None
    return not rest


def _command(final_name: str) -> str:
    return "train-motion" if final_name.startswith("motion") else "train-subject"


def run_inputs(cfg) -> dict[str, object]:
    """The paths a training reads (flag -> path): what --overwrite must never delete."""
    if cfg is None:
        return {}
    names = {"data": "--data", "model": "--model", "encoder": "--encoder", "flow_model": "--flow-model",
             "cache_dir": "--cache-dir"}
    return {flag: getattr(cfg, name) for name, flag in names.items() if getattr(cfg, name, None)}


def check_run_dir(out: str | os.PathLike, final_name: str, resume: bool, overwrite: bool, cfg=None,
                  explicit: set[str] | None = None, inputs: dict[str, object] | None = None) -> Path:
    """Whether `out` can take this run (nothing is changed): no live trainer in it, --resume only with a
    checkpoint and, given `cfg`, the same settings (see `resume_settings`), no clobbering without --overwrite, and
    --overwrite only of a run folder of this trainer holding none of its inputs (run_folder.check_replaceable).
    The trainers' CLI calls it before any model loads."""
    out = Path(out)
    if overwrite and resume:
        raise SmraboothError("--resume and --overwrite exclude each other")
    if out.exists() and not out.is_dir():
        raise SmraboothError(f"--out {out}: is a file, a folder is needed")
    check_unlocked(out)
    entries = _entries(out)
    has_run = (out / "config.yaml").exists() or (out / final_name).exists()
    if overwrite:
        run_folder.check_replaceable(out, _command(final_name), {**run_inputs(cfg), **(inputs or {})},
                                     owned=trainer_wrote, legacy="a training run" if has_run else "")
    elif resume:
        if not list_checkpoints(out):
            raise SmraboothError(f"nothing to resume in {out}: it has no complete checkpoint")
        if cfg is not None:
            resume_settings(cfg, saved_settings(cfg, out), explicit, out)
    elif entries:
        if (out / final_name).exists():
            raise SmraboothError(f"{out} already holds a finished run ({final_name}): pass --overwrite to replace "
                                 f"it, --resume with more --steps to continue it, or choose another --out")
        step = list_checkpoints(out)[-1][0] if list_checkpoints(out) else None
        what = f"an unfinished run (checkpoint at step {step})" if step else "files"
        raise SmraboothError(f"{out} already holds {what}: pass --resume to continue, --overwrite to start over, "
                             f"or choose another --out")
    return out


def prepare_run_dir(out: str | os.PathLike, final_name: str, resume: bool, overwrite: bool, cfg=None) -> Path:
    """Take the folder's lock, then create or check the run folder; refuse to clobber a run unless asked.
    Returns the folder to train in: `out`, or with --overwrite of an existing run a staging folder beside it that
    `finish_run` swaps in (the old run stays complete until then). Temporary folders of a call killed while
    writing are removed."""
    run_folder.recover(out)
    out = check_run_dir(out, final_name, resume, overwrite, inputs=run_inputs(cfg))
    acquire_lock(out)
    check_run_dir(out, final_name, resume, overwrite, inputs=run_inputs(cfg))  # again, now that no trainer can
    if overwrite and _entries(out):
        return run_folder.begin(out, _command(final_name))
    # a new run, a resumed one or an older smrabooth's run resumed: marked as ours, what else it holds as not
    run_folder.start_marker(out, _command(final_name), owned=trainer_wrote)
    for tmp in list((out / "checkpoints").glob(".*.tmp")) if (out / "checkpoints").is_dir() else []:
        shutil.rmtree(tmp, ignore_errors=True) if tmp.is_dir() else tmp.unlink(missing_ok=True)
    return out


def saved_settings(cfg, run_dir: Path):
    """The settings a run folder's config.yaml holds, as `cfg`'s type (types checked: one line if wrong)."""
    from ..config import apply_dict, read_yaml

    return apply_dict(type(cfg)(), read_yaml(run_dir / "config.yaml"), str(run_dir / "config.yaml"))


RESUME_MAY_CHANGE = {"steps", "cache_dir"}  # what --resume may change: how far to train, where caches live
PATH_SETTINGS = ("data", "out", "cache_dir", "model", "encoder", "flow_model")


def resolved_paths(cfg):
    """`cfg` with its path settings absolute and resolved (links and '..'), so a run folder names what it read
    wherever it is resumed from; a hub id (no such local path) stays as written."""
    from dataclasses import replace

    changes = {}
    for name in PATH_SETTINGS:
        value = getattr(cfg, name, None)
        if isinstance(value, str) and value and (name in ("data", "out", "cache_dir") or os.path.exists(value)):
            changes[name] = os.path.realpath(os.path.expanduser(value))
    return replace(cfg, **changes)


def resume_settings(cfg, saved, explicit: set[str] | None, run_dir: Path):
    """The settings a resumed run continues with: the saved ones, with the requested `steps`. Any other
    setting requested differently is an error naming each (`explicit`: the fields the user set; None: all).
    Paths are compared resolved: the same folder given by another (relative or absolute) path is the same."""
    from dataclasses import replace

    from ..config import to_dict

    want, have = to_dict(resolved_paths(cfg)), to_dict(resolved_paths(saved))
    names = [f for f in (want if explicit is None else explicit) if f in want and f not in RESUME_MAY_CHANGE]
    changed = [f for f in names if want[f] != have[f] and f != "out"]
    if changed:
        what = ", ".join(f"{f} {have[f]!r} (asked: {want[f]!r})" for f in changed)
        raise SmraboothError(f"--resume: {run_dir} was trained with {what}; a resumed run keeps its settings and "
                             f"only --steps may change: drop those flags, or start a new run (another --out or "
                             f"--overwrite)")
    last = list_checkpoints(run_dir)[-1][0] if list_checkpoints(run_dir) else 0
    if cfg.steps < last:
        raise SmraboothError(f"--steps {cfg.steps}: {run_dir} is already at step {last}; pass --steps {last} or more")
    return replace(saved, steps=cfg.steps, cache_dir=cfg.cache_dir)


def open_run(cfg, final_name: str, resume: bool, overwrite: bool, parallel: DataParallel = SINGLE,
             explicit: set[str] | None = None):
    """Lock and prepare the run folder and write config.yaml (the main process); returns (cfg, run_dir).

    A resumed run keeps the settings it was started with (read back from its config.yaml); only `steps` may
    grow, so the continuation is the same run. `explicit`: the settings the user gave (the CLI's flags);
    None compares every setting of `cfg`. config.yaml holds absolute, resolved paths. With --overwrite of an
    existing run, run_dir is a staging folder (`finish_run` swaps it in)."""
    from ..config import write_yaml

    run_dir = parallel.on_main(lambda: prepare_run_dir(cfg.out, final_name, resume=resume, overwrite=overwrite,
                                                       cfg=cfg))
    if resume:
        cfg = resume_settings(cfg, saved_settings(cfg, run_dir), explicit, run_dir)
    cfg = resolved_paths(cfg)
    parallel.barrier()  # every process has read config.yaml before the main one rewrites it

    def write():
        try:
            write_yaml(cfg, run_dir / "config.yaml")
        except OSError as e:
            raise SmraboothError(f"cannot write {run_dir / 'config.yaml'} ({e})") from None

    parallel.on_main(write)
    return cfg, run_dir


def data_files(data, items) -> list[Path]:
    """The files a trainer reads from its data: metadata.csv, each image and mask (subject items), each clip."""
    files = [Path(data) / "metadata.csv"] if (Path(data) / "metadata.csv").is_file() else []
    for item in items:
        files += [p for p in item[:2] if p] if isinstance(item, tuple) else [item.video_path]
    return files


def check_inputs(run_dir: Path, files, resume: bool, parallel: DataParallel = SINGLE) -> None:
    """inputs.json: the absolute path and SHA-256 of every data file the run reads (metadata.csv, images, masks,
    clips). A resumed run reads the same files with the same contents, or stops naming the first that differs."""
    from ..data.cache import file_digest
    from ..readers import read_json

    if not parallel.is_main:
        return
    path = Path(run_dir) / INPUTS_FILE
    now = {os.path.realpath(f): file_digest(f) for f in dict.fromkeys(map(str, files))}
    if resume and path.is_file():
        saved = read_json(path, dict, "a run's inputs record").get("files", {})
        if not isinstance(saved, dict):
            raise SmraboothError(f"{path} is damaged: its files entry is not a mapping; delete it to resume "
                                 "without the check")
        for name in sorted(set(saved) | set(now)):
            if name not in now:
                why = f"read {name}, which it would not read now"
            elif name not in saved:
                why = f"did not read {name}, which it would read now"
            elif saved[name] != now[name]:
                why = f"read {name}, which has changed since"
            else:
                continue
            raise SmraboothError(f"--resume: the run in {run_dir} {why}; a resumed run trains on the data it started "
                                 f"with: restore it, or start a new run (another --out, or --overwrite)")
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps({"files": now}, indent=1) + "\n")
    os.replace(tmp, path)


def warn_untokened_captions(texts, tokens: tuple[str, ...], kind: str) -> None:
    """Captions that hold none of the identifier tokens train a LoRA bound to no word: say so, once."""
    from ..data.tokens import find_token

    missing = [t for t in texts if find_token(t, tokens) is None]
    if missing:
        log.warning(f"{len(missing)} of {len(texts)} captions have no {kind} token ({' or '.join(tokens)}), e.g. "
                    f"{missing[0]!r}: the {kind} LoRA binds to no word you can prompt with")


def finish_run(run_dir: Path) -> Path:
    """The training in `run_dir` is over: a staging folder (--overwrite) is swapped in for the run it replaces,
    the marker lists the files the run wrote, and the lock is released. Returns the run folder."""
    target = run_folder.commit(run_dir, trainer_wrote)
    run_folder.finish_marker(target)
    release_lock(target)
    return target


# ---------------------------------------------------------------- model setup
@contextmanager
def seeded(seed: int):
    """The global torch RNG seeded for the block and restored after it: initialisations (peft's LoRA A,
    the projector) that use the global RNG then depend on --seed only, not on what ran before."""
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


LORA_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
# The VAE while training (recipes: vae_dtype); auto: the denoiser's dtype, as one pipeline dtype for every model
VAE_DTYPES = {"auto": None, "fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def training_vae_dtype(cfg, pipe) -> torch.dtype | None:
    """The VAE's dtype while `cfg` trains on `pipe` (None: a trainer without the setting, the VAE as it is)."""
    setting = getattr(cfg, "vae_dtype", None)
    if setting != "auto":
        return VAE_DTYPES.get(setting)
    from ..backbones import backbone_of

    return next(iter(backbone_of(pipe).denoisers(pipe).values())).dtype


VAE_DTYPE_HELP = ("the VAE while training (the clips' and photos' encoding, MoRA's decode): auto = the transformer's "
                  "dtype (the authors' code loads every model in one dtype)")


def add_lora_adapter(transformer, name: str, rank: int, alpha: float, layer_types,
                     seed: int = 0, dtype: torch.dtype = torch.float32) -> list[nn.Parameter]:
    """Freeze the transformer, add a peft LoRA on `layer_types` initialised from `seed`; LoRA params in
    `dtype` (initialised in fp32, then cast: a bf16 LoRA is the fp32 one rounded). Returns them."""
    from peft import LoraConfig

    transformer.requires_grad_(False)
    config = LoraConfig(r=rank, lora_alpha=alpha, init_lora_weights=True,
                        target_modules=module_suffixes(layer_types))
    with seeded(seed):
        transformer.add_adapter(config, adapter_name=name)
    transformer.set_adapters([name])
    params = [p for p in transformer.parameters() if p.requires_grad]
    for p in params:
        p.data = p.data.float().to(dtype)
    return params


def compile_blocks(transformer, cuda_graphs: bool = False) -> None:
    """Regional torch.compile: each transformer block is compiled once and reused by all of them. With
    `cuda_graphs` (mode "reduce-overhead") every block's kernels replay as one CUDA graph: the subject
    step (1024 tokens, 300 LoRA-wrapped linears) is launch-bound, and graphs halve it (benchmarks/README.md)."""
    transformer.compile_repeated_blocks(**({"mode": "reduce-overhead"} if cuda_graphs else {}))


def sample_sigma(sigmas: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One sigma of the training table (schedules.training_sigmas), its index drawn uniformly (docs/method.md)."""
    return sigmas[torch.randint(len(sigmas), (1,), generator=generator)]


def sample_timesteps(sigmas: torch.Tensor, weights: torch.Tensor, n: int,
                     generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """`n` entries of the training table, each index drawn uniformly: their sigmas and flow-loss weights
    (schedules.timestep_weights). n = 1 draws what `sample_sigma` draws."""
    index = torch.randint(len(sigmas), (n,), generator=generator)
    return sigmas[index], weights[index]


def add_second_lora_adapter(transformer, name: str, rank: int, alpha: float, layer_types,
                            seed: int = 0, dtype: torch.dtype = torch.float32) -> list[nn.Parameter]:
    """Add another trainable peft LoRA next to the adapters already there (all stay active, at scale 1).
    Returns its parameters (in `dtype`)."""
    from peft import LoraConfig

    before = set(transformer.peft_config)
    config = LoraConfig(r=rank, lora_alpha=alpha, init_lora_weights=True,
                        target_modules=module_suffixes(layer_types))
    with seeded(seed), warnings.catch_warnings():  # peft warns whenever a second adapter is added: the point here
        warnings.filterwarnings("ignore", message="Already found a `peft_config`")
        transformer.add_adapter(config, adapter_name=name)
    transformer.set_adapters([*before, name])
    params = [p for n, p in transformer.named_parameters() if f".{name}." in n]
    for p in params:
        p.data = p.data.float().to(dtype)
        p.requires_grad_(True)
    return params


def export_lora(transformer, adapter: str, path: Path, rank: int, alpha: float, kind: str,
                dtype: torch.dtype | None = None, extra_info: dict | None = None) -> Path:
    info = {"kind": kind, "base": base_model_info(transformer.config), **(extra_info or {})}
    weights = LoraWeights(lora_state_dict_from_peft(transformer, adapter), rank, alpha, info)
    return save_lora(path, weights, dtype=dtype)


# ---------------------------------------------------------------- checkpoints
def _adapter_files(adapter: str | tuple[str, ...]) -> dict[str, str]:
    """adapter -> its file in a checkpoint: lora.safetensors for the first, lora-<name>.safetensors after it."""
    names = (adapter,) if isinstance(adapter, str) else tuple(adapter)
    return {name: "lora.safetensors" if i == 0 else f"lora-{name}.safetensors" for i, name in enumerate(names)}


def save_checkpoint(run_dir: Path, step: int, transformer, adapter: str | tuple[str, ...],
                    modules: dict[str, nn.Module], optimizer: torch.optim.Optimizer, generator: torch.Generator,
                    keep: int = 2, effective_batch: int = 1) -> Path:
    """Write checkpoints/step-N atomically. Weights that are not finite are never written; a disk that fills up
    or turns read-only is one error, with no half-written folder left."""
    from safetensors import SafetensorError
    from safetensors.torch import save_file

    folder = Path(run_dir) / "checkpoints"
    final = folder / f"step-{step}"
    loras = {file: lora_state_dict_from_peft(transformer, name) for name, file in _adapter_files(adapter).items()}
    states = {name: {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
              for name, module in modules.items()}
    for name, tensors in [*loras.items(), *states.items()]:
        if not all(bool(torch.isfinite(v).all()) for v in tensors.values() if v.is_floating_point()):
            raise SmraboothError(f"step {step}: the {name} weights hold NaN or infinite values; training stopped "
                                 f"without writing them ({_kept(run_dir)})")
    try:
        folder.mkdir(exist_ok=True)
        with atomic_path(final) as tmp:
            tmp.mkdir()
            for file, tensors in loras.items():
                save_file(tensors, str(tmp / file))
            for name, tensors in states.items():
                save_file(tensors, str(tmp / f"{name}.safetensors"))
            torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
            save_file(rng_state(generator), str(tmp / "rng.safetensors"))
            (tmp / "state.json").write_text(json.dumps({"step": step, "effective_batch": effective_batch}))
    except (OSError, SafetensorError) as e:
        raise SmraboothError(f"could not write the checkpoint of step {step} in {folder} ({e}); nothing half-written "
                             f"was left ({_kept(run_dir)})") from None
    for _, old in list_checkpoints(run_dir)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def _kept(run_dir: Path) -> str:
    found = list_checkpoints(run_dir)
    return f"the last complete checkpoint, step {found[-1][0]}, is kept: --resume continues from it" if found \
        else "no checkpoint was written yet"


def read_checkpoint_state(folder: Path) -> dict:
    """A checkpoint's state.json, checked against the folder it is in: a JSON object whose whole-number step is the
    N of step-N and whose effective batch is a whole number >= 1."""
    from ..readers import read_json

    folder = Path(folder)
    state = read_json(folder / "state.json", dict, "a checkpoint's state.json")
    step, batch = state.get("step"), state.get("effective_batch", 1)
    m = CHECKPOINT_RE.match(folder.name)
    if isinstance(step, bool) or not isinstance(step, int) or (m and step != int(m.group(1))):
        raise SmraboothError(f"{folder / 'state.json'} says step {step!r}, but the folder is {folder.name}")
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise SmraboothError(f"{folder / 'state.json'}: effective_batch {batch!r} is not a whole number >= 1")
    return state


def _checked_tensors(path: Path, expected: set[str] | None = None) -> dict[str, torch.Tensor]:
    """A checkpoint file's tensors: readable, finite, floating point where weights are; with `expected`, exactly
    those keys (a file missing half its LoRA tensors would leave those layers as initialised)."""
    from ..readers import read_safetensors

    tensors, _ = read_safetensors(path, "checkpoint file")
    if expected is not None and set(tensors) != expected:
        missing, extra = sorted(expected - set(tensors)), sorted(set(tensors) - expected)
        what = f"lacks {len(missing)} of its tensors (e.g. {missing[0]})" if missing else f"has unexpected {extra[0]}"
        raise SmraboothError(f"{path} {what}: it is not this run's LoRA")
    for key, value in tensors.items():
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise SmraboothError(f"{path}: {key} holds NaN or infinite values")
    return tensors


def load_checkpoint(folder: Path, transformer, adapter: str | tuple[str, ...], modules: dict[str, nn.Module],
                    optimizer: torch.optim.Optimizer, generator: torch.Generator) -> int:
    """Restore everything `save_checkpoint` wrote; returns the step. Loads only safe formats, and only whole,
    finite checkpoints: every LoRA tensor of the run present, no NaN or Inf anywhere, state.json naming its own
    step (else SmraboothError, and `load_newest_intact` tries the one before)."""
    from peft import set_peft_model_state_dict

    folder = Path(folder)
    state = read_checkpoint_state(folder)
    device = next(p for p in transformer.parameters() if p.requires_grad).device
    for name, file in _adapter_files(adapter).items():
        if not (folder / file).is_file():
            raise SmraboothError(f"checkpoint {folder} has no {file}: it is not from a run with these LoRAs")
        expected = set(lora_state_dict_from_peft(transformer, name))
        lora = {k: v.to(device) for k, v in _checked_tensors(folder / file, expected).items()}
        result = set_peft_model_state_dict(transformer, lora, adapter_name=name)
        unexpected = getattr(result, "unexpected_keys", None)
        if unexpected:
            raise SmraboothError(f"checkpoint {folder} does not match this run's LoRA (unexpected {unexpected[0]})")
    for name, module in modules.items():
        tensors = _checked_tensors(folder / f"{name}.safetensors", set(module.state_dict()))
        module.load_state_dict({k: v.to(device) for k, v in tensors.items()})
    optim = torch.load(folder / "optimizer.pt", map_location=device, weights_only=True)
    for value in optim.get("state", {}).values() if isinstance(optim, dict) else []:
        for t in value.values() if isinstance(value, dict) else []:
            if torch.is_tensor(t) and t.is_floating_point() and not bool(torch.isfinite(t).all()):
                raise SmraboothError(f"{folder / 'optimizer.pt'} holds NaN or infinite values")
    optimizer.load_state_dict(optim)
    set_rng_state(_checked_tensors(folder / "rng.safetensors"), generator, numpy_state=state.get("numpy"))
    return int(state["step"])


def make_validator(pipe, run_dir: Path, prompt_embeds: torch.Tensor, negative_embeds: torch.Tensor, frames: int,
                   height: int, width: int, shift: float, steps: int = 30, seed: int = 0, fps: int = 16):
    """Render a short video with the LoRA as it is now: validation/step-N.mp4."""
    from ..recipes import PAPER
    from ..sampling import GenerateConfig, sample_video
    from ..video import write_video

    gen_cfg = GenerateConfig(prompt="", frames=frames, height=height, width=width, steps=steps,
                             guidance=PAPER.sampler.guidance, seed=seed, scheduler=PAPER.sampler.scheduler,
                             shift=shift)

    from ..backbones import backbone_of

    denoisers = list(backbone_of(pipe).denoisers(pipe).values())

    def validate(step: int) -> None:
        folder = Path(run_dir) / "validation"
        folder.mkdir(exist_ok=True)
        for module in denoisers:
            module.eval()
        device = pipe._execution_device
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            result = sample_video(pipe, gen_cfg, progress=False,
                                  prompt_embeds=prompt_embeds.to(device, pipe.transformer.dtype),
                                  negative_embeds=negative_embeds.to(device, pipe.transformer.dtype))
        write_video(result.frames, folder / f"step-{step}.mp4", fps=fps)
        for module in denoisers:
            module.train()

    return validate


# ---------------------------------------------------------------- the loop
@dataclass
class LoopSettings:
    steps: int
    lr: float
    weight_decay: float = 1e-2
    max_grad_norm: float = 1.0
    checkpoint_every: int = 100
    keep_checkpoints: int = 2
    validate_every: int = 0
    progress: bool = True
    warmup_steps: int = 0  # steps 0 .. warmup_steps-1 run at lr * warmup_factor (torch's ConstantLR)
    warmup_factor: float = 1.0

    def lr_at(self, step: int) -> float:
        return self.lr * (self.warmup_factor if step < self.warmup_steps else 1.0)


def load_newest_intact(run_dir: Path, transformer, adapter: str | tuple[str, ...], modules, optimizer,
                       generator) -> tuple[int, Path]:
    """Load the newest checkpoint that reads back whole; returns its step and folder. A damaged one (a disk
    error, a truncated file) is skipped with a warning. Every state is overwritten by the one that loads, so
    a partial load of a damaged one leaves nothing behind."""
    damaged = []
    for _, folder in reversed(list_checkpoints(run_dir)):
        try:
            return load_checkpoint(folder, transformer, adapter, modules, optimizer, generator), folder
        except Exception as e:  # noqa: BLE001  (safetensors, torch, json and OS errors alike mean "damaged")
            damaged.append(folder.name)
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            log.warning(f"checkpoint {folder} is damaged ({first}); trying the one before")
    raise SmraboothError(f"nothing to resume in {run_dir}: every checkpoint is damaged ({', '.join(damaged)})")


def train_loop(
    run_dir: Path,
    settings: LoopSettings,
    transformer,
    adapter: str | tuple[str, ...],
    params: list[nn.Parameter],
    modules: dict[str, nn.Module],
    compute_losses: Callable[..., dict[str, torch.Tensor]],
    generator: torch.Generator,
    resume: bool = False,
    validate: Callable[[int], None] | None = None,
    parallel: DataParallel = SINGLE,
    batched: bool = False,
) -> int:
    """AdamW over `params` (LoRA + extra modules); `compute_losses` returns {'loss': total, term: value} of one
    sample, or with `batched` the mean over one sample per generator of a list (DataParallel.backward).
    `parallel`: this process's share of each step's samples (train/distributed.py); the main process writes.
    A parameter that gets no gradient in a step (requires_grad off, as a motion phase sets it) is left as it
    is by that step: AdamW skips it, weight decay included."""
    from tqdm.auto import tqdm

    # fp32 on a GPU: one fused kernel for all LoRA tensors. bf16 LoRAs take torch's default (foreach on a GPU),
    # whose every operation rounds to bf16 as the authors' optimizer does; fused AdamW computes in fp32 and rounds once.
    fused = all(p.is_cuda and p.dtype == torch.float32 for p in params)
    optimizer = torch.optim.AdamW(params, lr=settings.lr, weight_decay=settings.weight_decay, fused=fused or None)
    start = 0
    if resume:
        start, folder = load_newest_intact(run_dir, transformer, adapter, modules, optimizer, generator)
        parallel.keep_effective_batch(read_checkpoint_state(folder).get("effective_batch", 1))
    main = parallel.is_main
    log = JsonlLog(Path(run_dir) / "log.jsonl", resume_step=start if resume else None) if main else None
    if parallel.effective_batch > 1 or parallel.processes > 1 or (Path(run_dir) / "parallel.json").is_file():
        parallel.record(run_dir, start)
    if start >= settings.steps:
        return start
    bar = tqdm(range(start, settings.steps), initial=start, total=settings.steps, desc="training",
               disable=not settings.progress or not main, dynamic_ncols=True)
    t0 = time.time()
    pending = None  # last step's record, written once the next step is queued: no GPU sync per step

    def flush(record):
        values = {k: float(v) for k, v in record.pop("losses").items()}
        bad = {k: v for k, v in values.items() if not math.isfinite(v)}
        if bad:  # before any checkpoint of this step is written: the last one on disk stays good
            terms = ", ".join(f"{k} = {v}" for k, v in bad.items())
            raise SmraboothError(f"step {record['step']}: {terms}; training stopped ({_kept(run_dir)}; try a lower "
                                 f"--lr, or --mixed-precision no)")
        record = {"step": record["step"], **values, "lr": record["lr"], "seconds": record["seconds"]}
        if log is not None:
            log.write(record)
        bar.set_postfix({k: f"{v:.4f}" for k, v in values.items()})

    for step in bar:
        optimizer.zero_grad(set_to_none=True)
        losses = parallel.backward(step, generator, params, compute_losses, batched)
        if settings.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(params, settings.max_grad_norm)
        for group in optimizer.param_groups:  # a function of the step alone: a resumed run gets the same lr
            group["lr"] = settings.lr_at(step)
        optimizer.step()
        if pending is not None:
            flush(pending)
        done = step + 1
        pending = {"step": done, "losses": {k: v.detach() for k, v in losses.items()},
                   "lr": optimizer.param_groups[0]["lr"], "seconds": round(time.time() - t0, 3)}
        checkpoint = done % settings.checkpoint_every == 0 or done == settings.steps
        validating = validate is not None and settings.validate_every and done % settings.validate_every == 0
        if checkpoint or validating:
            flush(pending)
            pending = None
        if checkpoint and main:
            save_checkpoint(run_dir, done, transformer, adapter, modules, optimizer, generator,
                            keep=settings.keep_checkpoints, effective_batch=parallel.effective_batch)
        if validating and main:
            validate(done)
    return settings.steps
