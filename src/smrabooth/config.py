"""Settings as dataclasses, read from and written to YAML.

Each stage has one dataclass of settings (e.g. `sampling.GenerateConfig`). A YAML file holds a
subset of its fields; command-line flags override the file; unknown keys are an error.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import yaml

from .errors import SmraboothError


def to_dict(config) -> dict:
    """Plain dict of a settings dataclass (tuples as lists), ready for YAML or JSON."""
    def plain(v):
        if isinstance(v, (tuple, list)):
            return [plain(x) for x in v]
        if isinstance(v, Path):
            return str(v)
        return v

    return {f.name: plain(getattr(config, f.name)) for f in dataclasses.fields(config)}


def read_yaml(path: str | os.PathLike) -> dict:
    path = Path(path)
    if not path.is_file():
        raise SmraboothError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise SmraboothError(f"{path} is not valid YAML ({e})") from None
    if not isinstance(data, dict):
        raise SmraboothError(f"{path} must hold a mapping of setting: value")
    return data


def apply_dict(config, values: dict, source: str = "settings"):
    """Return a copy of `config` with `values` applied; unknown keys are an error naming `source`."""
    known = {f.name for f in dataclasses.fields(config)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise SmraboothError(f"{source}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return dataclasses.replace(config, **values)


def write_yaml(config, path: str | os.PathLike) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(yaml.safe_dump(to_dict(config), sort_keys=False))
    os.replace(tmp, path)
