"""Output folders a command owns: the marker it writes into them, what `--overwrite` checks, and how a folder is
replaced without a moment where the old one is gone and the new one is not complete.

Every folder a smrabooth command creates as its `--out` (a training run, a prepared subject or motion set, a
demo or bench run) holds `.smrabooth.json`: the command that wrote it, the files that were there before it
started ("found": never its own) and, once the command has finished, every file it wrote ("files", paths relative
to the folder, subfolders included). `--overwrite`:

1. moves nothing until every setting and input has been checked (the commands call `check_replaceable` in their
   checks, before any model loads);
2. replaces only a folder with the marker of the same command, refuses one that holds any of the command's own
   inputs (`--data`, `--model`, the photos, the clip, ...) or a file the command did not write (a user's notes,
   a photo added to images/, a model folder moved in, what was in the folder before the command wrote beside it),
   naming it;
3. writes the new run into a sibling folder `.<name>.replacing` and swaps it in at the end (`commit`): until
   then the old run stays where it was, complete; a call that fails or is killed leaves it untouched.

Folders written before the marker existed are not replaced: the error says to delete them by hand (or to
choose another `--out`); `--resume` still continues an old training run, and marks it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from .errors import InternalError, SmraboothError
from .logs import get_logger
from .readers import is_inside

log = get_logger(__name__)

MARKER = ".smrabooth.json"
LOCK = ".lock"  # train/lock.py's: a live trainer's, never an entry of the run
STAGING_SUFFIX = ".replacing"
REPLACED_SUFFIX = ".replaced"
_TEMPORARY = re.compile(r"^\..+\.tmp$|^\..+\.tmp\.[^.]+$")  # atomic writes' temporaries (.x.tmp, .v.tmp.mp4)


# ---------------------------------------------------------------- the marker
def write_marker(folder, command: str, files: Iterable[str] | None = None, found: Iterable[str] = (),
                 **extra) -> Path:
    """Mark `folder` as written by `command`; `files`: the files it wrote (once it has finished), `found`: files
    that were there before it started (never its own)."""
    from . import __version__

    folder = Path(folder)
    record = {"command": command, "smrabooth": __version__, "written": time.strftime("%Y-%m-%d %H:%M:%S"), **extra}
    if files is not None:
        record["files"] = sorted(set(files) - {MARKER, LOCK})
    if found:
        record["found"] = sorted(set(found))
    tmp = folder / f".{MARKER}.tmp"
    tmp.write_text(json.dumps(record, indent=1) + "\n")
    os.replace(tmp, folder / MARKER)
    return folder / MARKER


def read_marker(folder) -> dict | None:
    """The marker of `folder`; None when there is none. A marker that is not a JSON object is an error naming it."""
    path = Path(folder) / MARKER
    if not path.is_file():
        return None
    from .readers import read_json

    marker = read_json(path, dict, "a run folder's marker")
    lists = [marker.get(k, []) for k in ("files", "found")]
    if not isinstance(marker.get("command"), str) or not all(
            isinstance(names, list) and all(isinstance(n, str) for n in names) for names in lists):
        raise SmraboothError(f"{path} is damaged (it should name the command that wrote the folder): delete the "
                             f"folder {folder} yourself if it holds nothing you need, or choose another --out")
    return marker


def start_marker(folder, command: str, owned: Callable[[str], bool] | None = None) -> None:
    """`command` starts writing into `folder` in place (a new run, a resumed one, a set written beside other files):
    the marker records the files there now that are not its own (by the marker, else `owned`), so that they never
    count as its own; until `finish_marker`, what the command writes is judged by `owned`."""
    folder = Path(folder)
    old = read_marker(folder)
    ours = _ours(old, owned) if old is not None else (owned or (lambda path: False))
    extra = {k: v for k, v in (old or {}).items() if k not in ("command", "smrabooth", "written", "files", "found")}
    write_marker(folder, command, found=[f for f in files_under(folder) if not ours(f)], **extra)


def finish_marker(folder, command: str | None = None) -> None:
    """The command (default: the one the marker names) is done with `folder`: the marker lists every file it holds
    that was not there before the command started (what `--overwrite` may replace)."""
    folder = Path(folder)
    old = read_marker(folder) or {}
    command = command or old.get("command")
    if command is None:
        raise InternalError(f"finish_marker: {folder} has no marker and no command was given")
    found = set(old.get("found", ()))
    extra = {k: v for k, v in old.items() if k not in ("command", "smrabooth", "written", "files", "found")}
    write_marker(folder, command, [f for f in files_under(folder) if f not in found], found=found, **extra)


# ---------------------------------------------------------------- checks
def entries(folder) -> list[Path]:
    """What a folder holds, its marker, a trainer's lock and temporaries of atomic writes aside."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return [p for p in folder.iterdir() if p.name not in (MARKER, LOCK) and not _TEMPORARY.match(p.name)]


def files_under(folder) -> list[str]:
    """Every file under `folder` (subfolders included; a link counts as a file, never followed), as a path
    relative to it with '/': what a marker lists. Its marker, a trainer's lock and temporaries aside."""
    folder = Path(folder)
    found = []
    for top in entries(folder):
        stack = [top]
        while stack:
            p = stack.pop()
            if p.is_dir() and not p.is_symlink():
                stack.extend(q for q in p.iterdir() if not _TEMPORARY.match(q.name))
            else:
                found.append(p.relative_to(folder).as_posix())
    return sorted(found)


def owned_names(names) -> Callable[[str], bool]:
    """`owned` for a command that writes the top-level entries `names` (and whatever is inside them)."""
    names = set(names)
    return lambda path: path.split("/", 1)[0] in names


def check_inputs_outside(out, inputs: dict[str, object], verb: str = "--overwrite would delete it") -> None:
    """No input of the command (flag -> path or paths) lies inside `out`."""
    out = Path(out)
    for flag, paths in inputs.items():
        for p in paths if isinstance(paths, (list, tuple, set)) else [paths]:
            if p and os.path.exists(p) and is_inside(p, out):
                raise SmraboothError(f"--out {out} holds the input {flag} {p}: {verb}; choose an --out folder that "
                                     f"holds none of the command's inputs")


def check_replaceable(out, command: str, inputs: dict[str, object], owned: Callable[[str], bool] | None = None,
                      same: Iterable[str] = (), legacy: str = "") -> bool:
    """Whether `--overwrite` may replace `out` (nothing is changed): True when it holds something to replace, False
    when it is missing or empty. Refused in one line: a folder holding an input, one without this command's marker
    (`same`: other commands whose folders this one may replace), one holding a file the command did not write
    (the files the marker lists; for a run that did not finish, `owned(path)` of a path relative to `out`, files
    the marker found there excepted). `legacy`: what an unmarked folder of an older smrabooth would hold, for the
    message."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise SmraboothError(f"--out {out}: is a file, a folder is needed")
    found = entries(out)
    if not found:
        return False
    check_inputs_outside(out, inputs)
    marker = read_marker(out)
    if marker is None:
        if legacy:
            raise SmraboothError(f"--out {out} holds {legacy} without smrabooth's marker {MARKER} (written by an "
                                 f"older smrabooth, or by hand): --overwrite replaces only folders smrabooth {command} "
                                 f"marked as its own. Delete it yourself if you no longer need it (rm -r {out}), or "
                                 f"choose another --out")
        raise SmraboothError(f"--out {out} holds files that are not a smrabooth {command} run (no {MARKER}); refusing "
                             f"to delete them: choose another --out")
    if marker["command"] != command and marker["command"] not in set(same):
        raise SmraboothError(f"--out {out} was written by smrabooth {marker['command']}, not {command}; refusing to "
                             f"replace it: choose another --out")
    ours = _ours(marker, owned)
    foreign = [f for f in files_under(out) if not ours(f)]
    if foreign:
        raise SmraboothError(f"--out {out} holds {foreign[0]}, which smrabooth {command} did not write; --overwrite "
                             f"would delete it: move it out of {out}, or choose another --out")
    return True


def _ours(marker: dict, owned: Callable[[str], bool] | None) -> Callable[[str], bool]:
    """Which files of a marked folder (paths relative to it) its command wrote: those its marker lists once it has
    finished (a folder listed by an older marker: everything in it); for a run that did not finish, what the command
    writes (`owned`), or (none given) everything; never a file the marker found there before the command started."""
    found = set(marker.get("found", ()))
    if "files" in marker:
        listed = set(marker["files"])

        def ours(path: str) -> bool:
            parts = path.split("/")
            return any("/".join(parts[:i]) in listed for i in range(1, len(parts) + 1))
    else:
        ours = owned or (lambda path: True)
    return lambda path: path not in found and ours(path)


# ---------------------------------------------------------------- replacing
def staging_path(out) -> Path:
    out = Path(os.path.abspath(out))
    return out.with_name(f".{out.name}{STAGING_SUFFIX}")


def target_of(folder) -> Path:
    """The folder a staging folder will become (a folder that is not staging: itself)."""
    folder = Path(folder)
    if folder.name.startswith(".") and folder.name.endswith(STAGING_SUFFIX):
        return folder.with_name(folder.name[1:-len(STAGING_SUFFIX)])
    return folder


def is_staging(folder) -> bool:
    return target_of(folder) != Path(folder)


def _remove_ours(path: Path) -> None:
    """Remove a staging or replaced folder left by an earlier call, if it carries the marker (else it is refused)."""
    if not path.exists() and not path.is_symlink():
        return
    if path.is_dir() and not path.is_symlink() and (path / MARKER).is_file():
        shutil.rmtree(path)
        return
    raise SmraboothError(f"{path} is in the way of replacing {target_of(path)} and is not a folder smrabooth "
                         f"left: move it away")


def recover(out) -> None:
    """A call killed between the two renames of `commit` left `out` missing and its old run at
    `.<name>.replaced`: put it back."""
    out = Path(os.path.abspath(out))
    replaced = out.with_name(f".{out.name}{REPLACED_SUFFIX}")
    if not out.exists() and replaced.is_dir():
        os.replace(replaced, out)


def begin(out, command: str) -> Path:
    """A fresh staging folder next to `out`, marked, where the new run is written (see `commit`)."""
    out = Path(os.path.abspath(out))
    staging = staging_path(out)
    _remove_ours(staging)
    staging.mkdir(parents=True)
    write_marker(staging, command)
    return staging


def commit(folder, owned: Callable[[str], bool] | None = None) -> Path:
    """Swap a staging folder in for its target (the old folder is removed only now); a folder that is not staging
    is left as it is. Returns the target. An old folder that came to hold an entry its command did not write while
    the new run was made (`owned`, as check_replaceable's) is kept at `.<name>.replaced`, with a warning."""
    folder = Path(folder)
    if not is_staging(folder):
        return folder
    target = target_of(folder)
    replaced = target.with_name(f".{target.name}{REPLACED_SUFFIX}")
    _keep_or_remove(replaced, owned)
    if target.exists():
        os.replace(target, replaced)
    os.replace(folder, target)
    if replaced.exists():
        foreign = _foreign(replaced, owned)
        if foreign:
            log.warning(f"the run replaced in {target} had come to hold {foreign[0]}; it is kept, with the old "
                        f"run, in {replaced}")
        else:
            shutil.rmtree(replaced, ignore_errors=True)
    return target


def _foreign(folder: Path, owned: Callable[[str], bool] | None) -> list[str]:
    """The files of a replaced run its command did not write (all of them without a readable marker)."""
    try:
        marker = read_marker(folder)
    except SmraboothError:
        marker = None
    ours = _ours(marker, owned) if marker is not None else (lambda path: False)
    return [f for f in files_under(folder) if not ours(f)]


def _keep_or_remove(replaced: Path, owned: Callable[[str], bool] | None = None) -> None:
    """Clear the way for `.<name>.replaced`: an earlier one holding only its run's files is removed, one holding
    something else (kept by `commit`) moves to `.<name>.replaced-N`."""
    if not replaced.exists() and not replaced.is_symlink():
        return
    if replaced.is_dir() and not replaced.is_symlink() and not _foreign(replaced, owned):
        shutil.rmtree(replaced)
        return
    n = 2
    while replaced.with_name(f"{replaced.name}-{n}").exists():
        n += 1
    os.replace(replaced, replaced.with_name(f"{replaced.name}-{n}"))


def discard(folder) -> None:
    """Drop a staging folder (the new run failed); the old run stays as it was."""
    folder = Path(folder)
    if is_staging(folder) and folder.is_dir():
        shutil.rmtree(folder, ignore_errors=True)


# ---------------------------------------------------------------- setting a run aside
# For runs that are resumed in place (the SMRA-Sprites bench rewrites its results after every case), a staging
# folder would hide a killed call's work from --resume. Those move the old run aside instead: it is kept beside
# the new one until the new one has finished, and put back if the new one fails.
def set_aside(out) -> Path:
    """Move the run in `out` to `.<name>.replaced` (nothing is deleted) and create `out` empty."""
    out = Path(os.path.abspath(out))
    aside = out.with_name(f".{out.name}{REPLACED_SUFFIX}")
    _keep_or_remove(aside)
    os.replace(out, aside)
    out.mkdir()
    return aside


def drop_aside(out) -> None:
    """The new run in `out` has finished: the run set aside is removed."""
    out = Path(os.path.abspath(out))
    aside = out.with_name(f".{out.name}{REPLACED_SUFFIX}")
    if aside.is_dir():
        shutil.rmtree(aside, ignore_errors=True)


def restore_aside(out) -> None:
    """The new run in `out` failed: it is removed and the run set aside comes back."""
    out = Path(os.path.abspath(out))
    aside = out.with_name(f".{out.name}{REPLACED_SUFFIX}")
    if aside.is_dir():
        if out.exists():
            shutil.rmtree(out)
        os.replace(aside, out)


def abandon(out) -> None:
    """A call replacing `out` failed: its staging folder is dropped, or kept (with a line saying how to finish it)
    when it holds a checkpoint of a training run; the run in `out` is unchanged either way."""
    staging = staging_path(out)
    if not staging.is_dir() or not (staging / MARKER).is_file():
        return
    if any((staging / "checkpoints").glob("step-*")):
        log.warning(f"the run in {out} is unchanged; the new run's checkpoints are in {staging}: "
              f"--resume --out {staging} finishes it and then puts it in place of {out}")
        return
    shutil.rmtree(staging, ignore_errors=True)


def abandons_staging(train):
    """Decorate a trainer `train(cfg, ..., overwrite=...)`: when it fails, `abandon` its staging folder."""
    import functools
    import inspect

    signature = inspect.signature(train)

    @functools.wraps(train)
    def wrapper(*args, **kwargs):
        try:
            return train(*args, **kwargs)
        except BaseException:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            cfg = bound.arguments.get("cfg")
            if bound.arguments.get("overwrite") and getattr(cfg, "out", None):
                abandon(cfg.out)
            raise

    return wrapper
