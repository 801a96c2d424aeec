"""Stand-in jobs for the web app's queue tests (tests/test_ui.py). A module of its own, importing the standard
library only: the queue's worker is a spawned process, which imports the runner's module before each test's
first job, so it must be quick to import."""

import json
import time
from pathlib import Path


def sleepy_runner(job, profile, workdir):
    if job["params"].get("fail"):
        from smrabooth.errors import SmraboothError

        raise SmraboothError(f"{job['params']['fail']} is broken: fix it")
    if job["params"].get("crash"):
        raise ZeroDivisionError("division by zero")
    (Path(workdir) / f"started-{job['title']}").write_text(str(time.time()))
    time.sleep(job["params"].get("sleep", 0))
    (Path(workdir) / f"ended-{job['title']}").write_text(str(time.time()))
    return {"title": job["title"]}


def stepping_runner(job, profile, workdir):
    """A training stand-in: a step every `sleep` seconds, a checkpoint after each, log.jsonl like the trainer's
    (a resumed call continues from its last checkpoint and truncates the log there), the LoRA at the end."""
    p = job["params"]
    out = Path(p["out"])
    done = 0
    if p.get("resume"):
        done = max(int(c.name.split("-")[1]) for c in (out / "checkpoints").iterdir())
        log = [r for r in map(json.loads, (out / "log.jsonl").read_text().splitlines()) if r["step"] <= done]
        (out / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in log))
    t0 = time.time()
    for step in range(done + 1, p["steps"] + 1):
        time.sleep(p.get("sleep", 0.05))
        with open(out / "log.jsonl", "a") as f:
            f.write(json.dumps({"step": step, "flow": 1.0 / step, "seconds": time.time() - t0}) + "\n")
        (out / "checkpoints" / f"step-{step}").mkdir(parents=True)
        (out / "checkpoints" / f"step-{step}" / "state.json").write_text("{}")
    (out / "subject_lora.safetensors").write_bytes(b"lora")
    return {"lora": str(out / "subject_lora.safetensors")}
