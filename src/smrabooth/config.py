"""Settings as dataclasses, read from and written to YAML and the command line.

Each stage has one dataclass of settings (e.g. `sampling.GenerateConfig`). A YAML file holds a
subset of its fields; command-line flags override the file; unknown keys are an error. A field made
with `setting(default, help)` carries its command-line help (and flag name, choices) with it, so every
command's settings flags are generated from their dataclasses (cli/common.py, add_config_arguments) and read
back by one function (config_from_args): each default, help text, choice list and check lives on the field.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import yaml

from .errors import SmraboothError


def setting(default=dataclasses.MISSING, help: str = "", *, flag: str | None = None, choices=None,
            default_factory=dataclasses.MISSING, cli: bool = True, group: str | None = None,
            required: bool = False, metavar: str | None = None):
    """A settings field with its command-line help. `flag`: the flag's name where it is not the field's
    (use_sura -> --sura/--no-sura); `cli=False`: set only from YAML or Python, no flag; `group`: the section of
    --help it is listed in; `required`: the command refuses to run without the flag; `metavar`: how --help
    names the value (e.g. x0,y0,x1,y1)."""
    metadata = {"help": help, "flag": flag, "choices": choices, "cli": cli, "group": group, "required": required,
                "metavar": metavar}
    return dataclasses.field(default=default, default_factory=default_factory, metadata=metadata)


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
    """A settings file: a mapping of setting: value (duplicate keys, non-text keys, deep nesting and alias bombs
    refused in one line, see readers.parse_yaml)."""
    from .readers import parse_yaml, read_text

    path = Path(path)
    if not path.is_file():
        raise SmraboothError(f"config file {path} does not exist")
    data = parse_yaml(read_text(path, "config file"), path)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SmraboothError(f"{path} must hold a mapping of setting: value")
    return data


LEGACY_BOOLS = {"vae_checkpointing"}  # text settings that run folders written by older versions hold as true/false


def _typed(value, hint: str, key: str, source: str):
    """`value` checked against a field's annotation (as written: 'int', 'float | None', 'tuple[str, ...]').
    YAML reads 1e-4 as a string: a float field takes a string that is a number."""
    from .readers import short_repr

    options = [h.strip() for h in hint.split("|")]
    if value is None and "None" in options:
        return None
    options = [o for o in options if o != "None"]
    kinds = {"int": "a whole number", "float": "a number", "str": "text", "bool": "true or false"}
    for option in options:
        if option == "bool" and isinstance(value, bool):
            return value
        if option == "int" and isinstance(value, int) and not isinstance(value, bool):
            return value
        if option == "float" and not isinstance(value, bool):
            if isinstance(value, (int, float)):
                try:
                    return float(value)
                except OverflowError:  # an integer of hundreds of digits: out of every range
                    raise SmraboothError(f"{source}: {key}: {short_repr(value)} is too large") from None
            if isinstance(value, str):
                try:
                    return float(value)
                except ValueError:
                    pass
        if option == "str" and (isinstance(value, str) or (isinstance(value, bool) and key in LEGACY_BOOLS)):
            return value
        if option.startswith("tuple") and (isinstance(value, str) or (
                isinstance(value, (list, tuple)) and len(value) <= 1000 and all(isinstance(v, str) for v in value))):
            return value
        if option == "dict" and isinstance(value, dict):
            return value
        if option not in kinds and not option.startswith(("tuple", "dict")):
            return value  # a type this check does not know: left to the settings' validate()
    wanted = " or ".join(kinds.get(o, "a list of names" if o.startswith("tuple") else o) for o in options)
    raise SmraboothError(f"{source}: {key}: {short_repr(value)} is not {wanted}")


def apply_dict(config, values: dict, source: str = "settings"):
    """Return a copy of `config` with `values` applied; unknown keys and values of the wrong type are an
    error naming `source`."""
    fields = {f.name: f for f in dataclasses.fields(config)}
    from .readers import short_repr

    odd = [k for k in values if not isinstance(k, str)]
    if odd:
        raise SmraboothError(f"{source}: key {short_repr(odd[0])} is not a setting name (names are text)")
    unknown = sorted(set(values) - set(fields))
    if unknown:
        more = " ..." if len(unknown) > 5 else ""
        raise SmraboothError(f"{source}: unknown setting(s) {', '.join(unknown[:5])}{more}; "
                             f"known: {', '.join(sorted(fields))}")
    typed = {k: _typed(v, fields[k].type if isinstance(fields[k].type, str) else getattr(fields[k].type, "__name__",
                                                                                         str(fields[k].type)),
                       k, source) for k, v in values.items()}
    return dataclasses.replace(config, **typed)


def write_yaml(config, path: str | os.PathLike) -> None:
    """A settings dataclass (or a plain dict of settings) as YAML, written atomically."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(yaml.safe_dump(config if isinstance(config, dict) else to_dict(config), sort_keys=False))
    os.replace(tmp, path)
