"""Messages in the page's own terms: the CLI's one-line errors name command-line flags and full paths; the
pages show the same line with each flag replaced by the control that sets it (or, for a flag the page has
no control for, by what to do in the page), and with the paths of Gradio's upload folder and of the work
folder shortened to what the user recognises (the uploaded file's name, a path inside the work folder)."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

# whole phrases first (flags the page has no control for), then flag -> the page's control
PHRASES = [
    (re.compile(r",? ?or --loop to repeat the clip"), ", or an earlier 'Start (s)'"),
    (re.compile(r"[Uu]se a longer clip, fewer --frames \(4k\+1\), a lower --fps"),
     "Use a longer clip, fewer Frames (4k+1), a lower fps"),
    (re.compile(r"and pass it with --aesthetic-head"), "and start the app with it (smrabooth ui --aesthetic-head FILE)"),
    (re.compile(r"pass --cotracker-checkpoint FILE \(scaled_offline\.pth\) and --cotracker-repo DIR, or "
                r"--tracker searaft for the built-in SEA-RAFT tracker"),
     ("start the app with CoTracker3 (smrabooth ui --cotracker-checkpoint FILE --cotracker-repo DIR), or choose "
      "the SEA-RAFT tracker on this page")),
    (re.compile(r"; pass --cotracker-checkpoint FILE"), "; start the app with smrabooth ui --cotracker-checkpoint FILE"),
    (re.compile(r"(huggingface-cli download \S+) --local-dir DIR"), r"\1 --local-dir DIR"),  # a shell command
    (re.compile(r"and pass (--detector|--sam) DIR"), r"and start the app with smrabooth ui \1 DIR"),
    (re.compile(r"pass --overwrite or choose another --out"), "it was kept"),
    (re.compile(r"try a lower --lr, or --mixed-precision no"), "try a lower Learning rate"),
    (re.compile(r"Try another --object-prompt, a lower --box-threshold, or remove the image"),
     "Try other words in 'What the mask tool looks for', or remove the photo"),
]
CONTROLS = {
    "--frames": "Frames", "--fps": "fps", "--start": "Start (s)", "--steps": "Steps", "--rank": "Rank",
    "--lr": "Learning rate", "--caption": "Caption", "--seed": "Seed", "--guidance": "Guidance",
    "--height": "Height", "--width": "Width", "--t-point": "T_point", "--negative-prompt": "Negative prompt",
    "--subject-scale": "Subject scale", "--subject-scale-early": "Subject scale before T_point",
    "--motion-scale": "Motion scale", "--object-prompt": "What the mask tool looks for", "--name": "the name",
    "--recipe": "Recipe", "--preset": "Preset", "--prompt": "Prompt", "--validate-every": "Validation video every N steps",
    "--no-sura": "SuRA", "--no-mora": "MoRA", "--sura": "SuRA", "--mora": "MoRA",
}
FLAG = re.compile(r"--[a-z][a-z0-9-]*")
CLI_PREFIX = re.compile(r"^smrabooth [a-z-]+: ")


def upload_folders() -> list[str]:
    """Where Gradio keeps uploads (GRADIO_TEMP_DIR, else <tmp>/gradio)."""
    return [str(Path(os.environ.get("GRADIO_TEMP_DIR") or Path(tempfile.gettempdir()) / "gradio"))]


def page_terms(text: str, workdir: str | os.PathLike | None = None) -> str:
    """`text` (one line from the CLI's code) as the page says it."""
    text = CLI_PREFIX.sub("", str(text or ""))
    for folder in upload_folders():  # .../gradio/<hash>/photo.png -> photo.png
        text = re.sub(re.escape(folder.rstrip("/")) + r"/(?:[^/\s]+/)*([^/\s]+)", r"\1", text)
    if workdir is not None:
        root = str(Path(workdir).resolve()).rstrip("/")
        text = text.replace(root + "/", "").replace(root, "the work folder")
    for pattern, repl in PHRASES:  # a phrase's own flags (the app's command line) are kept as they are
        text = pattern.sub(lambda m, repl=repl: m.expand(repl).replace("--", "\0"), text)
    text = FLAG.sub(lambda m: f"'{CONTROLS[m.group(0)]}'" if m.group(0) in CONTROLS else
                    m.group(0)[2:].replace("-", " "), text)
    return text.replace("\0", "--")
