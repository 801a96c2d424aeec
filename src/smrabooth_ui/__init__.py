"""smrabooth's web app (`smrabooth ui`): the whole workflow in a browser, on Gradio.

An optional extra (`pip install "smrabooth[ui]"`); the core `smrabooth` package never imports it.
Every action calls the same Python API as the CLI (data preparation, the trainers, sampling, the
metrics runner); this package only adds pages, a job queue and a work folder (docs/ui.md).

    workdir.py   the work folder: where every upload, run, video and report lives; safe names
    profile.py   the model the app runs on and the defaults its pages start from
    jobs.py      the job queue: job state on disk, one worker process, cancel
    tasks.py     what a job does (train, generate, evaluate), run inside the worker
    handlers.py  the pages' actions as plain functions (unit-tested without a browser)
    app.py       the Gradio pages wired to the handlers
    cli.py       the `smrabooth ui` command
"""
