"""The grid of test prompts: every subject with every motion, in varied scenes.

A subject folder's text "a picture of V* dog" gives the subject phrase "a V* dog"; a motion folder's
text "a person S* dribbling a basketball" gives the motion phrase "S* dribbling a basketball" (the
actor before S* is replaced by the subject). Prompt = "{subject} {motion}, {background}".
Each folder keeps its own token: the authors' "A picture of sks dog" and "a dog is vvt walking" give
"a sks dog is vvt walking, {background}" (an "is"/"are" before the token stays with the motion).
The authors wrote backgrounds with GPT-4o and dropped illogical pairs ("a car playing the piano");
here backgrounds come from a list (built in, or one per line in a file) and the user lists the pairs
to drop. A motion folder of theirs that ships combine_test_prompts.json ({"prompts": {subject: prompt}})
gives its own prompt for each subject it names, in place of the generated ones.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from ..errors import SmraboothError
from .folders import METADATA, find_motion_folders, find_subject_folders, read_metadata
from .tokens import MOTION_TOKENS, find_token, token_index

DEFAULT_BACKGROUNDS = [
    "on a sunny beach with waves in the background",
    "in a snowy forest",
    "on a busy city street at night with neon lights",
    "in a green park on a spring afternoon",
    "on the surface of the moon",
    "in a cozy living room with warm lighting",
    "on a mountain top at sunrise",
    "in a desert with sand dunes",
    "on a wooden stage under a spotlight",
    "under cherry blossom trees",
]


def subject_phrase(text: str, name: str) -> str:
    """'a picture of V* dog' -> 'a V* dog' (any 'a photo/picture/image of' prefix is dropped)."""
    m = re.match(r"^\s*(?:an?\s+)?(?:picture|photo|image|photograph)\s+of\s+(.*)$", text, flags=re.IGNORECASE)
    rest = (m.group(1) if m else text).strip().rstrip(".")
    if not rest:
        rest = f"V* {name}"
    if not re.match(r"^(a|an|the)\s", rest, flags=re.IGNORECASE):
        rest = f"a {rest}"
    return rest


def motion_phrase(text: str, token: str | None = None) -> str:
    """'a person S* dribbling a basketball.' -> 'S* dribbling a basketball'; 'a dog is vvt walking' ->
    'is vvt walking'. `token` None: the caption's own motion token (S* or vvt)."""
    text = text.strip().rstrip(".")
    token = token or find_token(text, MOTION_TOKENS) or "S*"
    i = token_index(text, token)
    if i < 0:
        raise SmraboothError(f"motion caption '{text}' has no {token} token: add it before the motion verb")
    m = re.search(r"\b(is|are)\s+$", text[:i], flags=re.IGNORECASE)
    return text[m.start() if m else i:]


def load_exclusions(path: str | os.PathLike | None) -> set[tuple[str, str]]:
    """Pairs to drop, one 'subject,motion' per line ('#' comments; '*' matches any name)."""
    if path is None:
        return set()
    path = Path(path)
    if not path.is_file():
        raise SmraboothError(f"exclusion file {path} does not exist")
    pairs = set()
    from ..readers import read_text

    for n, line in enumerate(read_text(path, "exclusion file").splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != 2 or not all(parts):
            raise SmraboothError(f"{path} line {n}: expected 'subject,motion' (e.g. car,piano), got '{line}'")
        pairs.add((parts[0], parts[1]))
    return pairs


def load_backgrounds(path: str | os.PathLike | None) -> list[str]:
    if path is None:
        return list(DEFAULT_BACKGROUNDS)
    path = Path(path)
    if not path.is_file():
        raise SmraboothError(f"backgrounds file {path} does not exist")
    from ..readers import read_text

    lines = [ln.strip() for ln in read_text(path, "backgrounds file").splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith("#")]
    if not lines:
        raise SmraboothError(f"{path} holds no backgrounds (one scene per line, e.g. 'on a sunny beach')")
    return lines


def _excluded(subject: str, motion: str, exclude: set[tuple[str, str]]) -> bool:
    return any(s in (subject, "*") and m in (motion, "*") for s, m in exclude)


def build_test_prompts(subjects: dict[str, str], motions: dict[str, str], backgrounds: list[str],
                       per_pair: int = 3, exclude: set[tuple[str, str]] = frozenset(),
                       shipped: dict[tuple[str, str], str] | None = None) -> list[dict]:
    """subjects: name -> subject phrase; motions: name -> motion phrase. `per_pair` backgrounds per pair,
    taken in turn from the list so neighbouring pairs get different scenes. `shipped`: (subject, motion)
    -> a prompt written for that pair (combine_test_prompts.json), used as is instead."""
    if per_pair < 1:
        raise SmraboothError(f"--per-pair must be >= 1, got {per_pair}")
    shipped = shipped or {}
    prompts, k = [], 0
    for s_name, s_phrase in subjects.items():
        for m_name, m_phrase in motions.items():
            if _excluded(s_name, m_name, exclude):
                continue
            if (s_name, m_name) in shipped:
                prompts.append({"subject": s_name, "motion": m_name, "background": None,
                                "prompt": shipped[s_name, m_name], "source": SHIPPED})
                continue
            for _ in range(min(per_pair, len(backgrounds))):
                bg = backgrounds[k % len(backgrounds)]
                k += 1
                prompts.append({"subject": s_name, "motion": m_name, "background": bg,
                                "prompt": f"{s_phrase} {m_phrase}, {bg}", "source": "generated"})
    if not prompts:
        raise SmraboothError("every subject-motion pair is excluded: nothing to write")
    return prompts


def collect_subjects(roots) -> dict[str, str]:
    out = {}
    for root in roots:
        for name, folder in find_subject_folders(root).items():
            out[name] = subject_phrase(read_metadata(folder / METADATA, "subject").rows[0].text, name)
    return out


def collect_motions(roots, token: str | None = None) -> dict[str, str]:
    out = {}
    for root in roots:
        for name, folder in find_motion_folders(root).items():
            out[name] = motion_phrase(read_metadata(folder / METADATA, "motion").rows[0].text, token)
    return out


SHIPPED = "combine_test_prompts.json"


def read_shipped_prompts(folder: str | os.PathLike) -> dict[str, str]:
    """subject -> prompt from a motion folder's combine_test_prompts.json ({"prompts": {subject: prompt}},
    the authors' form); {} when the folder has none."""
    path = Path(folder) / SHIPPED
    if not path.is_file():
        return {}
    from ..readers import read_json

    try:
        data = read_json(path, None)
    except SmraboothError as e:
        raise SmraboothError(f"{e}; fix it or pass --ignore-shipped-prompts") from None
    prompts = data.get("prompts") if isinstance(data, dict) else None
    if not isinstance(prompts, dict) or not all(isinstance(v, str) for v in prompts.values()):
        raise SmraboothError(f'{path} must hold {{"prompts": {{"<subject>": "<prompt>", ...}}}}; fix it or pass '
                             "--ignore-shipped-prompts")
    return {str(k): v.strip() for k, v in prompts.items() if v.strip()}


def collect_shipped_prompts(roots) -> dict[tuple[str, str], str]:
    """(subject, motion) -> prompt from every motion folder's combine_test_prompts.json under `roots`."""
    out = {}
    for root in roots:
        for motion, folder in find_motion_folders(root).items():
            out.update({(subject, motion): prompt for subject, prompt in read_shipped_prompts(folder).items()})
    return out


def write_test_prompts(path: str | os.PathLike, prompts: list[dict]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)  # checked writable before (check_output_file)
    path.write_text(json.dumps(prompts, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path
