"""Differences planted on our side, to show the harness catches them (each must make it exit 1)."""

from __future__ import annotations

import contextlib
import dataclasses

from ours import MOTION_STEPS, patched


def _recipe_override(module_name: str, cls_name: str, **settings):
    """The trainer's config, from any recipe, with `settings` on top (those the config has)."""
    import importlib

    module = importlib.import_module(module_name)
    cls = getattr(module, cls_name)
    real = cls.from_recipe.__func__

    def from_recipe(klass, recipe="official", **kw):
        fields = {f.name for f in dataclasses.fields(klass)}
        return real(klass, recipe, **{**kw, **{k: v for k, v in settings.items() if k in fields}})

    return patched(cls, "from_recipe", classmethod(from_recipe))


@contextlib.contextmanager
def _bell_weight():
    import smrabooth.train.motion as M
    import smrabooth.train.subject as S

    def scaled(real):
        def table(*a, **k):
            sigmas, weights = real(*a, **k)
            return sigmas, weights * 1.01
        return table

    with patched(S, "training_table", scaled(S.training_table)), \
            patched(M, "training_table", scaled(M.training_table)):
        yield


@contextlib.contextmanager
def _preset(**settings):
    from smrabooth.sampling import PRESETS

    old = dict(PRESETS["official"])
    PRESETS["official"].update(settings)
    try:
        yield
    finally:
        PRESETS["official"].clear()
        PRESETS["official"].update(old)


PLANTS = {
    "bell": ("the bell timestep weight w(t) 1% too large (subject and motion)", _bell_weight),
    "spatial-on": ("our motion stage trains the spatial LoRA and keeps it on in phase 2 (as their scripts describe)",
                   lambda: _recipe_override("smrabooth.train.motion", "MotionTrainConfig", spatial_steps=MOTION_STEPS,
                                            temporal_steps=MOTION_STEPS)),
    "shift5": ("the sampler's shift 5 (their pipeline's default) instead of the 1.0 their script passes",
               lambda: _preset(shift=5.0)),
    "warmup5": ("the subject warm-up 5 steps (torch's ConstantLR default, one process)",
                lambda: _recipe_override("smrabooth.train.subject", "SubjectTrainConfig", warmup_steps=5)),
    "subject-scale": ("the subject LoRA at 0.5 before the switch (the paper's) instead of their 0.6",
                      lambda: _preset(subject_scale_early=0.5)),
    "frame-range": ("MoRA feeds SEA-RAFT the prediction in [0, 255] like the reference (matched ranges)",
                    lambda: _recipe_override("smrabooth.train.motion", "MotionTrainConfig",
                                             mora_frame_range="matched")),
}


@contextlib.contextmanager
def planted(names):
    with contextlib.ExitStack() as stack:
        for name in names:
            stack.enter_context(PLANTS[name][1]())
        yield
