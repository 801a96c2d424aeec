"""The Gradio pages: Subject, Motion, Generate, Evaluate, and the job list.

Every button calls a handler (handlers.py) through `act`, which turns a SmraboothError into the line
the CLI prints, shown in the page's status line. A one-second timer refreshes what jobs change
(progress, loss curves, videos, the LoRA library); values that did not change are skipped, so a
playing video is not reloaded. Everything shown is read from the work folder, so a reloaded page, or
a restarted app, shows the same state.
"""

import html
import os

from smrabooth.errors import SmraboothError

from . import handlers as h

CSS = """
#smrabooth-title h1 {margin-bottom: 0}
.status-line p {font-family: ui-monospace, monospace; font-size: 13px}
"""


def progress_bar(fraction: float, elem: str) -> str:
    pct = max(0.0, min(1.0, float(fraction))) * 100
    return (f"<progress id='{elem}' value='{pct:.0f}' max='100' style='width:100%;height:14px'></progress>"
            f"<span style='font-size:12px'>{pct:.0f}%</span>")


# one colour per loss term, the same on every page; a term not listed takes the next of PALETTE
TERM_COLOURS = {"flow": "#2563eb", "sura": "#ea580c", "mora": "#16a34a", "debiased": "#9333ea"}
PALETTE = ("#0891b2", "#db2777", "#ca8a04", "#4b5563")


def loss_frame(rows: list[dict]):
    import pandas as pd

    # explicit dtypes: an empty frame would be all objects, and the plot would take the numbers for categories
    return pd.DataFrame(rows or [], columns=["step", "term", "value"]).astype({"step": int, "term": str,
                                                                               "value": float})


def term_colours(rows: list[dict]) -> dict[str, str]:
    """The colour of each loss term in `rows`, in order of appearance."""
    terms = list(dict.fromkeys(r["term"] for r in rows))
    extra = iter(PALETTE * len(terms))
    return {t: TERM_COLOURS.get(t) or next(extra) for t in terms}


def loss_plot(label: str, elem_id: str):
    """A training's loss curves, one line per term of its log.jsonl (filled by loss_plot_step)."""
    import gradio as gr

    return gr.LinePlot(loss_frame([]), x="step", y="value", color="term", label=label, elem_id=elem_id,
                       y_title="loss", color_title="term")


def loss_plot_step(sent: dict | None, rows: list[dict]) -> tuple[dict | None, dict]:
    """What to send a loss plot now, given what it was sent last: (the update's fields or None, what it
    has been sent). Gradio's plot fixes its colour domain when it draws the chart, and afterwards only
    swaps the data: lines of terms it has not seen get no stroke (an empty-looking plot). A changed
    color_map draws the chart again, from the data it holds at that moment, so new data goes first and
    the colours of new terms follow on the next refresh."""
    if sent is None or sent["rows"] != rows:
        return {"value": loss_frame(rows)}, {"rows": rows, "colours": sent["colours"] if sent else None}
    colours = term_colours(rows)
    if sent["colours"] != colours:
        return {"color_map": colours}, {"rows": rows, "colours": colours}
    return None, sent


def recipe_choice(elem_id: str, label: str = "Recipe"):
    """A dropdown of smrabooth's recipes (smrabooth.recipes.RECIPES), each named with what it is."""
    import gradio as gr

    from smrabooth.recipes import DEFAULT_RECIPE, RECIPES

    return gr.Dropdown(list(RECIPES), value=DEFAULT_RECIPE, label=label, elem_id=elem_id, scale=2,
                       info="; ".join(f"{r.name}: {r.description}" for r in RECIPES.values()))


def build_app(app: h.UiApp):
    import gradio as gr

    p = app.profile
    ex = app.examples

    def act(command: str, fn, *args):
        """Run a handler; its SmraboothError becomes the CLI's one-line error in the status line."""
        try:
            return fn(*args)
        except SmraboothError as e:
            return h.fail(command, e)

    with gr.Blocks(title="smrabooth") as demo:
        gr.Markdown(f"# smrabooth\nSubject + motion LoRAs on Wan2.1 (SMRABooth). Model: `{html.escape(p.label)}` "
                    f"on {p.device}; work folder: `{app.wd.root}`.", elem_id="smrabooth-title")
        seen = gr.State({})
        with gr.Tabs():
            # ------------------------------------------------------------------------------ subject
            with gr.Tab("Subject", id="subject", elem_id="tab-subject"):
                gr.Markdown("Upload a few photos of your subject, with masks (named like the photos) or the mask "
                            "tool, check the contact sheet, then train the subject LoRA (SuRA).")
                with gr.Row():
                    s_name = gr.Textbox(label="Subject name (class noun, e.g. dog)",
                                        value=ex.subject_name if ex else "",
                                        elem_id="subject-name")
                    s_source = gr.Radio(list(h.MASK_SOURCES), value=h.MASK_SOURCES[0], label="Masks",
                                        elem_id="subject-mask-source")
                    s_object = gr.Textbox(label="What the mask tool looks for (default: 'a NAME')",
                                          elem_id="subject-object")
                with gr.Row():
                    s_photos = gr.File(file_count="multiple", label="Photos", elem_id="subject-photos")
                    s_masks = gr.File(file_count="multiple", label="Masks (optional)", elem_id="subject-masks")
                with gr.Row():
                    s_add = gr.Button("Add photos and prepare", variant="primary", elem_id="subject-add")
                    s_example = gr.Button("Use the example subject", elem_id="subject-example", visible=ex is not None)
                s_status = gr.Markdown("", elem_id="subject-status", elem_classes="status-line")
                s_mask_job = gr.Markdown("", elem_id="subject-mask-job", elem_classes="status-line")
                with gr.Row():
                    s_gallery = gr.Gallery(label="Photos (select one to remove it)", columns=6, height=220,
                                           elem_id="subject-gallery")
                    s_sheet = gr.Image(label="Contact sheet (masks over the photos)", type="filepath", height=220,
                                       elem_id="subject-sheet", interactive=False)
                s_selected = gr.State(None)
                s_remove = gr.Button("Remove the selected photo", elem_id="subject-remove", size="sm")
                gr.Markdown("### Train the subject LoRA")
                s_fields = h.train_fields(app, "subject")
                with gr.Row():
                    s_recipe = recipe_choice("subject-recipe")
                    s_steps = gr.Number(s_fields["steps"], label="Steps", precision=0, elem_id="subject-steps")
                    s_rank = gr.Number(s_fields["rank"], label="Rank", precision=0, elem_id="subject-rank")
                    s_lr = gr.Number(s_fields["lr"], label="Learning rate", elem_id="subject-lr")
                    s_validate = gr.Number(0, label="Validation video every N steps (0: off)", precision=0,
                                           elem_id="subject-validate")
                    s_sura = gr.Checkbox(True, label="SuRA", elem_id="subject-sura")
                with gr.Row():
                    s_train = gr.Button("Train", variant="primary", elem_id="subject-train")
                    s_resume = gr.Button("Resume", elem_id="subject-resume")
                    s_cancel = gr.Button("Cancel", variant="stop", elem_id="subject-cancel")
                s_job = gr.Markdown("", elem_id="subject-job", elem_classes="status-line")
                s_progress = gr.HTML(progress_bar(0, "subject-progress-bar"))
                with gr.Row():
                    s_plot = loss_plot("Losses (flow, SuRA)", "subject-losses")
                    s_val = gr.Video(label="Latest validation video", elem_id="subject-validation", height=240,
                                     interactive=False)

            # ------------------------------------------------------------------------------- motion
            with gr.Tab("Motion", id="motion", elem_id="tab-motion"):
                gr.Markdown("Upload a clip of the motion, trim it, caption it with the S* token, then train the "
                            "motion LoRA (MoRA).")
                with gr.Row():
                    m_name = gr.Textbox(label="Motion name", value=ex.motion_name if ex else "", elem_id="motion-name")
                    m_caption = gr.Textbox(label="Caption with S*", value=ex.motion_caption if ex else "",
                                           elem_id="motion-caption")
                m_stage = p.train_config("motion")
                with gr.Row():
                    m_clip = gr.File(label="Clip", elem_id="motion-clip")
                    m_start = gr.Number(0.0, label="Start (s)", elem_id="motion-start")
                    m_frames = gr.Number(m_stage.frames, label="Frames (4k+1)", precision=0, elem_id="motion-frames")
                    m_fps = gr.Number(m_stage.fps, label="fps", elem_id="motion-fps")
                with gr.Row():
                    m_prepare = gr.Button("Trim and prepare", variant="primary", elem_id="motion-prepare")
                    m_example = gr.Button("Use the example motion", elem_id="motion-example", visible=ex is not None)
                m_status = gr.Markdown("", elem_id="motion-status", elem_classes="status-line")
                with gr.Row():
                    m_preview = gr.Video(label="Trimmed clip (what training sees)", elem_id="motion-preview",
                                         height=240, interactive=False, loop=True)
                    m_flow = gr.Video(label="Reference clip and its SEA-RAFT flow (MoRA's target)",
                                      elem_id="motion-flow", height=240, interactive=False, loop=True)
                gr.Markdown("### Train the motion LoRA")
                with gr.Row():
                    m_recipe = recipe_choice("motion-recipe")
                    m_steps = gr.Number(m_stage.steps, label="Steps", precision=0, elem_id="motion-steps")
                    m_rank = gr.Number(m_stage.rank, label="Rank", precision=0, elem_id="motion-rank")
                    m_lr = gr.Number(m_stage.lr, label="Learning rate", elem_id="motion-lr")
                    m_validate = gr.Number(0, label="Validation video every N steps (0: off)", precision=0,
                                           elem_id="motion-validate")
                    m_mora = gr.Checkbox(True, label="MoRA", elem_id="motion-mora")
                with gr.Row():
                    m_train = gr.Button("Train", variant="primary", elem_id="motion-train")
                    m_resume = gr.Button("Resume", elem_id="motion-resume")
                    m_cancel = gr.Button("Cancel", variant="stop", elem_id="motion-cancel")
                m_job = gr.Markdown("", elem_id="motion-job", elem_classes="status-line")
                m_progress = gr.HTML(progress_bar(0, "motion-progress-bar"))
                with gr.Row():
                    m_plot = loss_plot("Losses (flow, MoRA)", "motion-losses")
                    m_val = gr.Video(label="Latest validation video", elem_id="motion-validation", height=240,
                                     interactive=False)

            # ----------------------------------------------------------------------------- generate
            with gr.Tab("Generate", id="generate", elem_id="tab-generate"):
                gr.Markdown("Pick a subject LoRA and a motion LoRA from the work folder's runs and write a prompt "
                            "with V* (the subject) and S* (the motion).")
                g_library = gr.Gallery(label="Library (finished LoRAs)", columns=8, height=150, object_fit="contain",
                                       preview=False, elem_id="generate-library")
                with gr.Row():
                    g_subject = gr.Dropdown(["none"], value="none", label="Subject LoRA", elem_id="generate-subject")
                    g_motion = gr.Dropdown(["none"], value="none", label="Motion LoRA", elem_id="generate-motion")
                    g_preset = recipe_choice("generate-preset", "Preset (a recipe's sampler)")
                g_prompt = gr.Textbox(ex.prompt if ex else "a V* dog doing S* on a beach", label="Prompt",
                                      elem_id="generate-prompt")
                fields = h.preset_fields(app)
                g_negative = gr.Textbox(fields["negative_prompt"] or "", label="Negative prompt (the recipe's)",
                                        elem_id="generate-negative", max_lines=2)
                with gr.Row():
                    g_steps = gr.Number(fields["steps"], label="Steps", precision=0, elem_id="generate-steps")
                    g_guidance = gr.Number(fields["guidance"], label="Guidance", elem_id="generate-guidance")
                    g_frames = gr.Number(fields["frames"], label="Frames", precision=0, elem_id="generate-frames")
                    g_height = gr.Number(fields["height"], label="Height", precision=0, elem_id="generate-height")
                    g_width = gr.Number(fields["width"], label="Width", precision=0, elem_id="generate-width")
                with gr.Row():
                    g_early = gr.Number(fields["subject_scale_early"], label="Subject scale before T_point",
                                        elem_id="generate-early")
                    g_sscale = gr.Number(fields["subject_scale"], label="Subject scale", elem_id="generate-sscale")
                    g_mscale = gr.Number(fields["motion_scale"], label="Motion scale", elem_id="generate-mscale")
                    g_tpoint = gr.Textbox("", label="T_point (empty: the recipe's, by noise level)",
                                          elem_id="generate-tpoint")
                    g_seed = gr.Number(0, label="Seed", precision=0, elem_id="generate-seed")
                    g_baseline = gr.Checkbox(True, label="Also the no-LoRA baseline (same seed)",
                                             elem_id="generate-baseline")
                g_go = gr.Button("Generate", variant="primary", elem_id="generate-go")
                g_status = gr.Markdown("", elem_id="generate-status", elem_classes="status-line")
                g_progress = gr.HTML(progress_bar(0, "generate-progress-bar"))
                with gr.Row():
                    g_result = gr.Video(label="Result (both LoRAs, sparse injection)", elem_id="generate-result",
                                        autoplay=True, loop=True, interactive=False, height=300)
                    g_base = gr.Video(label="Baseline (no LoRA, same seed)", elem_id="generate-baseline-video",
                                      autoplay=True, loop=True, interactive=False, height=300)
                with gr.Accordion("Settings saved with the video", open=False):
                    g_settings = gr.Code(language="json", elem_id="generate-settings")

            # ----------------------------------------------------------------------------- evaluate
            with gr.Tab("Evaluate", id="evaluate", elem_id="tab-evaluate"):
                gr.Markdown("Score generated videos with the paper's metrics. A metric whose model cannot load, or "
                            "whose input the videos lack, is skipped and the reason is shown.")
                e_videos = gr.CheckboxGroup([], label="Generated videos", elem_id="evaluate-videos")
                e_metrics = gr.CheckboxGroup(h.metric_choices(), value=h.metric_choices(), label="Metrics",
                                             elem_id="evaluate-metrics")
                e_go = gr.Button("Evaluate", variant="primary", elem_id="evaluate-go")
                e_status = gr.Markdown("", elem_id="evaluate-status", elem_classes="status-line")
                e_table = gr.Code(label="Table (mean ± 95% interval)", elem_id="evaluate-table")
                e_skipped = gr.Markdown("", elem_id="evaluate-skipped")
                e_report = gr.HTML("", elem_id="evaluate-report")

        with gr.Accordion("Jobs (one runs at a time)", open=False):
            jobs = gr.Dataframe(headers=["queued", "job", "status", "error"], elem_id="jobs", interactive=False)

        # -------------------------------------------------------------------------------- events
        def photos_out(name):
            try:
                return h.subject_photos(app, name)
            except SmraboothError:
                return []

        def sheet_of(name):
            try:
                sheet = app.wd.subject(name) / "data" / "contact_sheet.png"
            except SmraboothError:
                return None
            return str(sheet) if sheet.is_file() else None

        def on_add(name, photos, masks, source, obj):
            def run():
                h.add_subject_photos(app, name, photos, masks)
                return h.prepare_subject_data(app, name, source, obj)
            msg = act("prepare-subject", run)
            return msg, photos_out(name), sheet_of(name), None, None

        s_add.click(on_add, [s_name, s_photos, s_masks, s_source, s_object],
                    [s_status, s_gallery, s_sheet, s_photos, s_masks])

        def on_example():
            def run():
                name, _ = h.use_example_subject(app)
                return name
            name = act("prepare-subject", run)
            if name.startswith("smrabooth"):
                return name, gr.skip(), gr.skip(), gr.skip(), gr.skip()
            return (f"prepared the example subject ({name}): check the contact sheet", name, photos_out(name),
                    sheet_of(name), h.MASK_SOURCES[0])

        s_example.click(on_example, None, [s_status, s_name, s_gallery, s_sheet, s_source])

        def on_select(name, evt: gr.SelectData):
            photos = photos_out(name)
            return photos[evt.index] if evt.index is not None and evt.index < len(photos) else None

        s_gallery.select(on_select, [s_name], [s_selected])

        def on_remove(name, selected, source, obj):
            def run():
                if not selected:
                    raise SmraboothError("no photo selected: click a photo in the gallery first")
                h.remove_subject_photo(app, name, selected)
                return "removed the photo; " + h.prepare_subject_data(app, name, source, obj)
            return act("prepare-subject", run), photos_out(name), sheet_of(name), None

        s_remove.click(on_remove, [s_name, s_selected, s_source, s_object], [s_status, s_gallery, s_sheet, s_selected])

        def train_click(kind, resume):
            def click(name, recipe, steps, rank, lr, align, validate):
                fn = h.train_subject if kind == "subject" else h.train_motion
                job = act(f"train-{kind}", fn, app, name, steps, rank, lr, align, validate, resume, recipe)
                return job if isinstance(job, str) else f"queued: {job['title']}"
            return click

        def recipe_change(kind):
            def change(recipe):
                fields = act(f"train-{kind}", h.train_fields, app, kind, recipe)
                return [gr.skip()] * 3 if isinstance(fields, str) else [fields[k] for k in ("steps", "rank", "lr")]
            return change

        for button, resume in ((s_train, False), (s_resume, True)):
            button.click(train_click("subject", resume),
                         [s_name, s_recipe, s_steps, s_rank, s_lr, s_sura, s_validate], [s_status])
        for button, resume in ((m_train, False), (m_resume, True)):
            button.click(train_click("motion", resume),
                         [m_name, m_recipe, m_steps, m_rank, m_lr, m_mora, m_validate], [m_status])
        s_recipe.change(recipe_change("subject"), [s_recipe], [s_steps, s_rank, s_lr])
        m_recipe.change(recipe_change("motion"), [m_recipe], [m_steps, m_rank, m_lr])
        s_cancel.click(lambda: act("train-subject", h.cancel_latest, app, "train_subject"), None, [s_status])
        m_cancel.click(lambda: act("train-motion", h.cancel_latest, app, "train_motion"), None, [m_status])

        def on_prepare(name, clip, caption, start, frames, fps):
            out = act("prepare-motion", h.prepare_motion_clip, app, name, clip, caption, start, frames, fps)
            if isinstance(out, str):
                return out, None, None
            return (f"prepared {out.name}: {int(frames)} frames at {fps:g} fps from {float(start or 0):g} s", str(out),
                    None)

        m_prepare.click(on_prepare, [m_name, m_clip, m_caption, m_start, m_frames, m_fps],
                        [m_status, m_preview, m_clip])

        def on_motion_example():
            out = act("prepare-motion", h.use_example_motion, app)
            if isinstance(out, str):
                return out, gr.skip(), gr.skip(), gr.skip()
            name, clip, caption = out
            return f"prepared the example motion ({name})", name, caption, str(clip)

        m_example.click(on_motion_example, None, [m_status, m_name, m_caption, m_preview])

        def on_preset(preset):
            fields = act("generate", h.preset_fields, app, preset)
            if isinstance(fields, str):
                return [gr.skip()] * len(h.PAGE_FIELDS)
            return [fields[k] or "" if k == "negative_prompt" else fields[k] for k in h.PAGE_FIELDS]

        g_preset.change(on_preset, [g_preset],
                        [g_steps, g_guidance, g_frames, g_height, g_width, g_early, g_sscale, g_mscale, g_negative])

        def on_generate(subject, motion, prompt, negative, preset, steps, guidance, frames, height, width, early,
                        sscale, mscale, tpoint, seed, baseline):
            job = act("generate", h.generate, app, subject, motion, prompt, seed, steps, guidance, early, sscale,
                      mscale, tpoint, frames, height, width, baseline, preset, negative)
            return job if isinstance(job, str) else f"queued: {job['title']}"

        g_go.click(on_generate, [g_subject, g_motion, g_prompt, g_negative, g_preset, g_steps, g_guidance, g_frames,
                                 g_height, g_width, g_early, g_sscale, g_mscale, g_tpoint, g_seed, g_baseline],
                   [g_status])

        def on_evaluate(videos, metrics):
            job = act("evaluate", h.evaluate, app, videos, metrics)
            return job if isinstance(job, str) else f"queued: {job['title']}"

        e_go.click(on_evaluate, [e_videos, e_metrics], [e_status])

        # ------------------------------------------------------------------------- live state
        live = [s_mask_job, s_sheet, s_job, s_progress, s_plot, s_val, m_job, m_progress, m_plot, m_val, m_flow,
                g_library, g_subject, g_motion, g_status, g_progress, g_result, g_base, g_settings, e_videos, e_status,
                e_table, e_skipped, e_report, jobs]

        def state(subject_choice, motion_choice, subject_name) -> dict:
            sv, mv = h.train_view(app, "train_subject"), h.train_view(app, "train_motion")
            gv, ev = h.generate_view(app), h.evaluate_view(app)
            subjects, motions = h.library(app, "subject"), h.library(app, "motion")
            s_labels, m_labels = ["none", *[e.label for e in subjects]], ["none", *[e.label for e in motions]]
            # a new LoRA is picked for the user when nothing is picked yet
            def pick(choice, labels):
                return choice if choice in labels and choice != "none" else labels[min(1, len(labels) - 1)]

            s_pick, m_pick = pick(subject_choice, s_labels), pick(motion_choice, m_labels)
            videos = h.generated_videos(app)
            sheet = sheet_of(subject_name)  # with its time: the mask tool writes it again under the same name
            return {
                "s_mask_job": h.mask_tool_view(app, subject_name),
                "s_sheet": ("file", sheet, sheet and os.path.getmtime(sheet)),
                "s_job": sv.status, "s_progress": progress_bar(sv.progress, "subject-progress-bar"),
                "s_plot": ("df", sv.losses), "s_val": sv.validation,
                "m_job": mv.status, "m_progress": progress_bar(mv.progress, "motion-progress-bar"),
                "m_plot": ("df", mv.losses), "m_val": mv.validation, "m_flow": mv.flow_video,
                "g_library": [(str(e.thumbnail), e.label) for e in subjects + motions if e.thumbnail],
                "g_subject": ("dd", s_labels, s_pick), "g_motion": ("dd", m_labels, m_pick),
                "g_status": gv.status, "g_progress": progress_bar(gv.progress, "generate-progress-bar"),
                "g_result": gv.result, "g_base": gv.baseline, "g_settings": gv.settings,
                "e_videos": ("cb", videos), "e_status": ev.status, "e_table": ev.table, "e_skipped": ev.skipped,
                "e_report": ev.report_html, "jobs": ("jobs", h.jobs_table(app)),
            }

        keys = ["s_mask_job", "s_sheet", "s_job", "s_progress", "s_plot", "s_val", "m_job", "m_progress", "m_plot",
                "m_val", "m_flow", "g_library", "g_subject", "g_motion", "g_status", "g_progress", "g_result", "g_base",
                "g_settings", "e_videos", "e_status", "e_table", "e_skipped", "e_report", "jobs"]

        def render(value):
            if isinstance(value, tuple) and value and value[0] == "file":
                return value[1]
            if isinstance(value, tuple) and value and value[0] == "dd":
                return gr.update(choices=value[1], value=value[2])
            if isinstance(value, tuple) and value and value[0] == "cb":
                return gr.update(choices=value[1])
            if isinstance(value, tuple) and value and value[0] == "jobs":
                return value[1] or [["", "", "", ""]]
            return value

        def refresh(last, subject_choice, motion_choice, subject_name):
            now = state(subject_choice, motion_choice, subject_name)
            out = []
            for k in keys:
                if isinstance(now[k], tuple) and now[k][0] == "df":  # a loss plot: data first, then colours
                    fields, now[k] = loss_plot_step(last.get(k), now[k][1])
                    out.append(gr.update(**fields) if fields else gr.skip())
                else:
                    out.append(gr.skip() if k in last and last[k] == now[k] else render(now[k]))
            return [now, *out]

        timer = gr.Timer(1.0)
        timer.tick(refresh, [seen, g_subject, g_motion, s_name], [seen, *live], show_progress="hidden")
        demo.load(lambda s, m, n: refresh({}, s, m, n), [g_subject, g_motion, s_name], [seen, *live],
                  show_progress="hidden")
    return demo
