"""`smrabooth ui`: serve the web app (registered through the `smrabooth.commands` entry point group;
`python -m smrabooth_ui` runs the same command on its own)."""

from __future__ import annotations

import argparse
import signal
import sys
from dataclasses import dataclass, replace
from pathlib import Path

from smrabooth.cli.common import add_config_arguments, config_from_args
from smrabooth.config import setting
from smrabooth.data.segment import DEFAULT_DETECTOR, DEFAULT_SAM
from smrabooth.errors import SmraboothError

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


@dataclass
class UiSettings:
    """The settings of `smrabooth ui` (a flag for each, made from these fields): the server, the model the pages
    start from, and the optional tools of the mask and Evaluate pages."""

    model: str | None = setting(None, "Wan2.1 model (hub id or folder) or an SMRA-Sprites bundle folder (none: the "
                                "bundled SMRA-Sprites model)")
    host: str = setting("127.0.0.1", "address to listen on (0.0.0.0: every network interface)")
    port: int = setting(7860, "TCP port to listen on")
    workdir: str = setting("smrabooth-work", "where uploads, runs, videos and reports are kept")
    auth: str | None = setting(None, "user:pass required to open the app (Gradio's login)")
    device: str | None = setting(None, "none: cuda if available", choices=("cpu", "cuda"))
    detector: str = setting(DEFAULT_DETECTOR, "the mask tool's GroundingDINO (hub id or folder)")
    sam: str = setting(DEFAULT_SAM, "the mask tool's SAM (hub id or folder)")
    cotracker_checkpoint: str | None = setting(None, "CoTracker3's scaled_offline.pth: the Evaluate page's Motion "
                                               "Fidelity with the paper's tracker")
    cotracker_repo: str | None = setting(None, "a clone of facebookresearch/co-tracker (if not installed)")
    aesthetic_head: str | None = setting(None, "LAION's sa_0_4_vit_l_14_linear.pth: Aesthetic Quality")

    def validate(self) -> UiSettings:
        from smrabooth.validation import check_choice

        parse_auth(self.auth)
        check_port(self.port)
        if self.device is not None:
            check_choice("--device", self.device, ("cpu", "cuda"))
        return self


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "ui", help="the web app: subject, motion, generate and evaluate pages (needs the ui extra)",
        description="Serve the smrabooth web app (Gradio). With no --model it runs on the bundled SMRA-Sprites "
        "model, with an example subject and motion from the sprite world.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_config_arguments(p, UiSettings)
    p.set_defaults(func=run)


def parse_auth(text: str | None) -> tuple[str, str] | None:
    if text is None:
        return None
    user, sep, password = text.partition(":")
    if not sep or not user or not password:
        raise SmraboothError("--auth must be user:pass (both non-empty)")
    return user, password


def host_warning(host: str) -> str | None:
    if host in LOCAL_HOSTS:
        return None
    return (f"warning: --host {host} serves the app to other machines: anyone who reaches this port can upload "
            "files, start trainings and read the work folder" + "; pass --auth user:pass")


def check_port(port: int) -> int:
    from smrabooth.validation import check_number

    return check_number("--port", port, 1, 65535, integer=True)


def settings_from_args(args) -> UiSettings:
    return config_from_args(UiSettings, args)


def run(args) -> int:
    s = settings_from_args(args)
    auth = parse_auth(s.auth)
    try:
        import gradio  # noqa: F401
    except ImportError:
        raise SmraboothError('the web app needs Gradio: pip install "smrabooth[ui]"') from None
    warning = host_warning(s.host)
    if warning:
        print(warning if auth is None else warning.split("; pass --auth")[0], file=sys.stderr, flush=True)
    if s.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise SmraboothError("--device cuda: no CUDA device is available here; use --device cpu")
    for flag in ("cotracker_checkpoint", "cotracker_repo", "aesthetic_head"):
        path = getattr(s, flag)
        if path and not Path(path).exists():
            raise SmraboothError(f"--{flag.replace('_', '-')} {path} does not exist")
    from .app import build_app, page_css, page_i18n
    from .handlers import UiApp
    from .profile import resolve_profile

    profile = replace(resolve_profile(s.model, s.device), detector=s.detector, sam=s.sam,
                      cotracker_checkpoint=s.cotracker_checkpoint, cotracker_repo=s.cotracker_repo,
                      aesthetic_head=s.aesthetic_head)
    stop_on_signals()
    app = UiApp(s.workdir, profile)
    try:
        demo = build_app(app)
        print(f"smrabooth ui: {profile.label} on {profile.device}; work folder {app.wd.root}", flush=True)
        demo.launch(server_name=s.host, server_port=s.port, auth=auth, css=page_css(), show_error=True,
                    allowed_paths=[str(app.wd.root)], footer_links=[], i18n=page_i18n())
    except KeyboardInterrupt:
        pass
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # a second signal must not cut the shutdown short
            signal.signal(sig, signal.SIG_IGN)
        app.close()  # the running job is marked interrupted and the worker ended before the app exits
        print("smrabooth ui: stopped", flush=True)
    return 0


def stop_on_signals() -> None:
    """SIGTERM (kill, a service manager, a container stop), SIGHUP and SIGINT stop the app as Ctrl+C does: the
    server closes and `app.close()` ends the worker, instead of the process dying with its worker left running.
    SIGINT too, since an app started in the background by a script inherits SIGINT ignored and would otherwise
    stay deaf to it."""
    def stop(signum, frame):
        raise KeyboardInterrupt(signal.Signals(signum).name)

    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, stop)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="smrabooth")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["ui", *(sys.argv[1:] if argv is None else argv)])
    try:
        return int(args.func(args) or 0)
    except SmraboothError as e:
        print(f"smrabooth ui: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
