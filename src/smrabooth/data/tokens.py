"""Identifier tokens: the placeholder word a LoRA binds its subject or motion to.

This project writes `V*` (subject) and `S*` (motion), as the paper does; the authors' released dataset
writes `sks` and `vvt` ("A picture of sks dog", "a dog is vvt walking"). A caption is trained on as
written, so a LoRA learns whichever token its captions carry. That token is found here, recorded in
the LoRA file (`info["token"]`), and the prompts built from a folder (`smrabooth prompts`) keep it; a
generation prompt without the token of a LoRA it uses gets a warning.
"""

from __future__ import annotations

import re

SUBJECT_TOKENS = ("V*", "sks")
MOTION_TOKENS = ("S*", "vvt")


def _pattern(token: str) -> re.Pattern:
    # a whole word: "sks" in "A picture of sks dog", not in "tasks"; "V*" not in "V**"
    return re.compile(rf"(?<![\w*]){re.escape(token)}(?![\w*])")


def find_token(text: str, tokens: tuple[str, ...]) -> str | None:
    """The first of `tokens` that `text` holds as a word, or None."""
    hits = [(m.start(), t) for t in tokens if (m := _pattern(t).search(text))]
    return min(hits)[1] if hits else None


def token_index(text: str, token: str) -> int:
    """Where `token` starts in `text` as a word (-1 when absent)."""
    m = _pattern(token).search(text)
    return m.start() if m else -1


def folder_token(texts: list[str], tokens: tuple[str, ...]) -> str | None:
    """The token a folder's captions share (None when none has one; the most used one when they differ)."""
    found = [t for t in (find_token(x, tokens) for x in texts) if t]
    return max(dict.fromkeys(found), key=found.count) if found else None


def missing_token_warnings(prompt: str, tokens: dict[str, str | None]) -> list[str]:
    """One line per LoRA (name -> its recorded token) whose token the prompt lacks."""
    return [f"warning: the {name} LoRA was trained on captions with '{token}' but the prompt has no '{token}' "
            f"(write e.g. '{_example(name, token)}')"
            for name, token in tokens.items() if token and token_index(prompt, token) < 0]


def _example(name: str, token: str) -> str:
    return f"a {token} dog ..." if name == "subject" else f"a dog is {token} walking ..."
