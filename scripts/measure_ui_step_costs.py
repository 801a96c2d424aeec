"""Measure what the web app's jobs cost per step on this machine with the bundled SMRA-Sprites model: the
reference timings (smrabooth_ui/eta.py, SPRITES_CPU) the app uses for its estimates until it has measured
a machine itself. Runs the app's own job code (handlers -> queue -> worker -> tasks) in a temporary work
folder, on the example subject and motion, with the demo's settings, and prints per-step cost and overhead:

    OMP_NUM_THREADS=2 PYTHONPATH=src python scripts/measure_ui_step_costs.py [--device cpu]

Takes about 6 minutes on 2 CPU cores. Also measures what checkpointing at every step adds to a step.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))


def main() -> int:
    from smrabooth_ui import eta
    from smrabooth_ui import handlers as h
    from smrabooth_ui.profile import resolve_profile

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--keep", help="work folder to keep (default: a temporary one)")
    args = ap.parse_args()
    work = Path(args.keep or tempfile.mkdtemp(prefix="smrabooth-costs-"))
    app = h.UiApp(work, resolve_profile(None, args.device))
    out, rows = {}, []
    try:
        name, _ = h.use_example_subject(app)
        motion, _, _ = h.use_example_motion(app)

        def run(key, job):
            job = app.queue.wait(job["id"], timeout=3600)
            if job["status"] != "done":
                raise SystemExit(f"{key}: {job['status']}: {job.get('error')}\n{app.queue.log_tail(job['id'])}")
            per_step, overhead = eta.measure(job)
            rows.append((key, round(per_step, 3), round(overhead, 1), job["params"].get("checkpoint_every")))
            print(f"{key}: {per_step:.3f} s/step, overhead {overhead:.1f} s", flush=True)
            return job, per_step, overhead

        def confirmed(fn, *a, **k):
            try:
                return fn(*a, **k)
            except h.LongJob as e:
                return fn(*a, **k, confirm=e.token)

        sub, sps, so = run("train_subject:sura", confirmed(h.train_subject, app, name, 12, 16, 5e-4, True))
        out["train_subject:sura"] = (round(sps, 3), round(so, 1))
        _, pps, po = run("train_subject:plain", confirmed(h.train_subject, app, name, 12, 16, 5e-4, False))
        out["train_subject:plain"] = (round(pps, 3), round(po, 1))
        mot, mps, mo = run("train_motion:mora", confirmed(h.train_motion, app, motion, 4, 16, 5e-4, True))
        out["train_motion:mora"] = (round(mps, 3), round(mo, 1))
        _, nps, no = run("train_motion:plain", confirmed(h.train_motion, app, motion, 12, 16, 5e-4, False))
        out["train_motion:plain"] = (round(nps, 3), round(no, 1))
        s_label, m_label = f"subject: {Path(sub['params']['out']).name}", f"motion: {Path(mot['params']['out']).name}"
        _, gps, go = run("generate", confirmed(h.generate, app, s_label, m_label, app.examples.prompt, 0, steps=8))
        out["generate"] = (round(gps, 3), round(go, 1))
        # checkpoints: the subject run again with a checkpoint at every step
        job = confirmed(h.train_subject, app, name, 12, 16, 5e-4, True)
        app.queue.cancel(job["id"])
        params = {**job["params"], "checkpoint_every": 1}
        ck = app.queue.submit("train_subject", "checkpoint at every step", params)
        _, cps, _ = run("train_subject:sura, checkpoint every step", ck)
    finally:
        app.close()
    print("load average:", os.getloadavg(), "threads:", os.environ.get("OMP_NUM_THREADS"))
    print(f"checkpoint at every step adds {cps - sps:+.3f} s/step")
    print("SPRITES_CPU = " + json.dumps(out).replace("[", "(").replace("]", ")"))
    print(f"work folder: {work} ({time.strftime('%Y-%m-%d %H:%M')})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
