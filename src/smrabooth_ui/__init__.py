"""smrabooth's web app (`smrabooth ui`): the whole workflow in a browser, on Gradio.

An optional extra (`pip install "smrabooth[ui]"`); the core `smrabooth` package never imports it.
Every action calls the same Python API as the CLI (data preparation, the trainers, sampling, the
metrics runner); this package only adds pages, a job queue and a work folder (docs/ui.md).

    workdir.py   the work folder: where every upload, run, video and report lives; safe and display names
    profile.py   the model the app runs on and the defaults its pages start from (the demo's on SMRA-Sprites)
    jobs.py      the job queue: job state on disk, one worker process, locks, cancel, resume, remove
    tasks.py     what a job does (train, generate, evaluate), run inside the worker
    eta.py       what a job costs: measured per-step costs, estimates, time left, checkpoint intervals
    messages.py  the CLI's messages in the page's terms
    curves.py    loss curves drawn as SVG
    fonts.py     the CJK characters of Wan's negative prompt (assets/)
    handlers.py  the pages' actions as plain functions (unit-tested without a browser)
    app.py       the Gradio pages wired to the handlers
    cli.py       the `smrabooth ui` command
"""
