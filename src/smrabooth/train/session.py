"""What every trainer does around its own losses, whatever the backbone (Wan's subject and motion trainers,
the U-Net variant's), so each gets it by construction:

    with training_session(cfg, pipe, final_name, ...) as run:   pipeline and frozen models borrowed (handed
                                                                back as found, also on an error), settings
                                                                validated, the launcher's data-parallel share
                                                                read, the run folder locked and checked
                                                                (resume, overwrite), config.yaml written
        ... precompute, add the LoRA, train_loop(..., parallel=run.parallel) ...
        return run.finish(final_name, write)                    the main process writes the LoRA files, the
                                                                others wait; timings.json; the lock released
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from ..run_folder import target_of
from .borrow import borrowed, cast_borrowed
from .common import PhaseTimes, finish_run, open_run, training_vae_dtype
from .distributed import DataParallel


@dataclass
class TrainingRun:
    cfg: object  # the validated settings (a resumed run's own)
    run_dir: Path
    parallel: DataParallel
    resume: bool = False
    times: PhaseTimes = field(default_factory=PhaseTimes)

    def finish(self, final_name: str, write: Callable[[], object]) -> Path:
        """`write()` (the LoRA files) on the main process, the others wait for it; the run folder is committed
        (an --overwrite's staging folder swapped in, the lock released). Returns the path of `final_name` in it."""
        if not self.parallel.is_main:
            self.parallel.barrier()
            return target_of(self.run_dir) / final_name
        write()
        self.times.mark("save")
        self.times.write(self.run_dir)
        self.parallel.barrier()
        return finish_run(self.run_dir) / final_name


@contextmanager
def training_session(cfg, pipe, final_name: str, resume: bool = False, overwrite: bool = False,
                     explicit: set[str] | None = None, models=(), check=None) -> Iterator[TrainingRun]:
    """Borrow `pipe` and `models` (train.borrow), validate `cfg` (then `check(cfg)`, what the trainer refuses
    before anything is written; it may return `cfg` with settings it settled), put the VAE in the run's dtype
    (cfg.vae_dtype; its exact values back after), open the run folder for this process's share of a
    data-parallel launch (train.distributed); yields the `TrainingRun`."""
    with borrowed(pipe, *models):
        times = PhaseTimes()
        cfg = cfg.validate()
        if check is not None:
            cfg = check(cfg) or cfg  # a check may also settle settings (train.memory's speed settings)
        parallel = DataParallel.from_launcher(cfg.batch_size, cfg.gradient_accumulation)
        cfg, run_dir = open_run(cfg, final_name, resume=resume, overwrite=overwrite, parallel=parallel,
                                explicit=explicit)
        parallel.batch_size, parallel.accumulation = cfg.batch_size, cfg.gradient_accumulation  # a resumed run's
        with cast_borrowed(getattr(pipe, "vae", None), training_vae_dtype(cfg, pipe)):
            yield TrainingRun(cfg, run_dir, parallel, resume, times)


__all__ = ["TrainingRun", "training_session"]
