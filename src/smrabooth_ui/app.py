"""The Gradio pages: Subject, Motion, Generate, Evaluate and Jobs.

Every button calls a handler (handlers.py) through `attempt`, which turns a SmraboothError into the page's
error line (the CLI's message in the page's terms, messages.py), shown right under the button that caused
it; the line is cleared when the form's inputs change or the next click succeeds. A job that would take
more than about 10 minutes asks for a second click (handlers.LongJob). What jobs change (status with the
time left, progress, loss curves, videos, the LoRA library, the galleries, the job page) is refreshed by a
one-second timer and on every page load; values that did not change are skipped, so a playing video is
not reloaded. Everything shown is read from the work folder, so a reloaded page, or a restarted app,
shows the same state.
"""

import html
import os

from smrabooth.errors import SmraboothError

from . import handlers as h
from .curves import loss_svg
from .fonts import FONT_FAMILY, font_css

CSS = """
#smrabooth-title h1 {margin-bottom: 0}
.status-line p {font-family: ui-monospace, monospace; font-size: 13px}
.notice p {font-size: 13px; margin: 0}
.notice:empty, .notice p:empty {display: none}
.smra-gallery {display: flex; flex-wrap: wrap; gap: 12px; align-items: flex-start}
.smra-card {margin: 0; width: 96px}
.smra-card.big {width: 160px}
.smra-thumb {width: 96px; height: 96px; display: flex; align-items: center; justify-content: center;
             overflow: hidden; border-radius: 6px; background: var(--background-fill-secondary)}
.smra-card.big .smra-thumb {width: 160px; height: 160px}
.smra-thumb img, .smra-thumb video {max-width: 100%; max-height: 100%; object-fit: contain; display: block}
.smra-card figcaption {font-size: 12px; line-height: 1.3; margin-top: 3px; overflow: hidden;
                       display: -webkit-box; -webkit-line-clamp: 2; -webkit-box-orient: vertical}
.smra-downloads {display: flex; flex-wrap: wrap; gap: 4px 10px; font-size: 12px; margin-top: 2px}
.smra-empty {font-size: 13px; color: var(--body-text-color-subdued)}
.smra-curves {border: 1px solid var(--border-color-primary); border-radius: 8px; padding: 6px 8px}
.smra-curves-label {font-size: 12px; color: var(--body-text-color-subdued)}
"""
# the negative prompt and the saved settings may be Chinese (Wan's): the bundled CJK font draws them
CJK_CSS = (f"#generate-negative textarea, #generate-settings .cm-content, #generate-settings .cm-line "
           f"{{font-family: var(--font), '{FONT_FAMILY}' !important}}\n")


S_PLOT, M_PLOT = "Losses (flow, SuRA)", "Losses (flow, MoRA)"


def page_css() -> str:
    return CSS + font_css() + CJK_CSS


def page_i18n():
    """Gradio's English strings lack 'common.complete', which its status tracker announces to screen readers
    after every event: the app supplies it."""
    import gradio as gr

    return gr.I18n(en={"common.complete": "Done", "common.error": "Error"})


def progress_bar(fraction: float, elem: str) -> str:
    pct = max(0.0, min(1.0, float(fraction))) * 100
    return (f"<progress id='{elem}' value='{pct:.0f}' max='100' style='width:100%;height:14px'></progress>"
            f"<span style='font-size:12px'>{pct:.0f}%</span>")


def recipe_choice(elem_id: str, default: str, label: str = "Recipe"):
    """A dropdown of smrabooth's recipes (smrabooth.recipes.RECIPES), each named with what it is."""
    import gradio as gr

    from smrabooth.recipes import RECIPES

    return gr.Dropdown(list(RECIPES), value=default, label=label, elem_id=elem_id, scale=2,
                       info="; ".join(f"{r.name}: {r.description}" for r in RECIPES.values()))


def notice(elem_id: str):
    """The line under a row of buttons: what the last click there did wrong, or asks (empty otherwise)."""
    import gradio as gr

    return gr.Markdown("", elem_id=elem_id, elem_classes=["notice"])


def negative_prompt_note(text: str | None) -> str:
    if not text:
        return "The recipe has no negative prompt (empty, as Wan's pipeline)."
    if any(ord(c) > 127 for c in text):
        return ("The recipe's negative prompt is Wan's own, in Chinese: it lists what to avoid (garish colours, "
                "overexposure, static frames, blur, subtitles, low quality, JPEG artefacts, extra or fused fingers, "
                "deformed limbs and faces, cluttered backgrounds, people walking backwards). Edit or empty it here.")
    return "The recipe's negative prompt. Edit or empty it here."


def build_app(app: h.UiApp):
    import gradio as gr

    p = app.profile
    ex = app.examples

    def attempt(fn, *args):
        """(value, notice, token): the handler's value and no notice, or None and the page's error line (a
        LongJob's warning with its token, which a second click on the same settings passes back)."""
        try:
            return fn(*args), "", None
        except h.LongJob as e:
            return None, f"**Long job:** {app.say(str(e))}", e.token
        except SmraboothError as e:
            return None, h.fail("", e, app), None

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
                s_status = notice("subject-status")
                s_mask_job = gr.Markdown("", elem_id="subject-mask-job", elem_classes="status-line")
                with gr.Row():
                    s_gallery = gr.Gallery(label="Photos (select one to remove it)", columns=6, height=220,
                                           elem_id="subject-gallery")
                    s_sheet = gr.Image(label="Contact sheet (masks over the photos)", type="filepath", height=220,
                                       elem_id="subject-sheet", interactive=False)
                s_selected = gr.State(None)
                with gr.Row():
                    s_remove = gr.Button("Remove the selected photo", elem_id="subject-remove", size="sm")
                s_remove_notice = notice("subject-remove-notice")
                gr.Markdown("### Train the subject LoRA")
                s_fields = h.train_fields(app, "subject")
                with gr.Row():
                    s_recipe = recipe_choice("subject-recipe", p.recipe)
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
                s_train_notice = notice("subject-train-notice")
                s_confirm = gr.State(None)
                s_job = gr.Markdown("", elem_id="subject-job", elem_classes="status-line")
                s_progress = gr.HTML(progress_bar(0, "subject-progress-bar"))
                with gr.Row():
                    s_plot = gr.HTML(loss_svg([], S_PLOT, "subject-curves"), elem_id="subject-losses")
                    s_val = gr.Video(label="Latest validation video", elem_id="subject-validation", height=240,
                                     interactive=False)
                s_downloads = gr.HTML("", elem_id="subject-downloads")

            # ------------------------------------------------------------------------------- motion
            with gr.Tab("Motion", id="motion", elem_id="tab-motion"):
                gr.Markdown("Upload a clip of the motion, trim it, caption it with the S* token, then train the "
                            "motion LoRA (MoRA).")
                with gr.Row():
                    m_name = gr.Textbox(label="Motion name", value=ex.motion_name if ex else "", elem_id="motion-name")
                    m_caption = gr.Textbox(label="Caption with S*", value=ex.motion_caption if ex else "",
                                           elem_id="motion-caption")
                m_stage = p.train_config("motion", p.recipe)
                with gr.Row():
                    m_clip = gr.File(label="Clip", elem_id="motion-clip")
                    m_start = gr.Number(0.0, label="Start (s)", elem_id="motion-start")
                    m_frames = gr.Number(m_stage.frames, label="Frames (4k+1)", precision=0, elem_id="motion-frames")
                    m_fps = gr.Number(m_stage.fps, label="fps", elem_id="motion-fps")
                with gr.Row():
                    m_prepare = gr.Button("Trim and prepare", variant="primary", elem_id="motion-prepare")
                    m_example = gr.Button("Use the example motion", elem_id="motion-example", visible=ex is not None)
                m_status = notice("motion-status")
                with gr.Row():
                    m_preview = gr.Video(label="Trimmed clip (what training sees)", elem_id="motion-preview",
                                         height=240, interactive=False, loop=True)
                    m_flow = gr.Video(label="Reference clip and its SEA-RAFT flow (MoRA's target)",
                                      elem_id="motion-flow", height=240, interactive=False, loop=True)
                gr.Markdown("### Train the motion LoRA")
                with gr.Row():
                    m_recipe = recipe_choice("motion-recipe", p.recipe)
                    m_steps = gr.Number(m_stage.steps, label="Steps", precision=0, elem_id="motion-steps")
                    m_rank = gr.Number(m_stage.rank, label="Rank", precision=0, elem_id="motion-rank")
                    m_lr = gr.Number(m_stage.lr, label="Learning rate", elem_id="motion-lr")
                    m_validate = gr.Number(0, label="Validation video every N steps (0: off)", precision=0,
                                           elem_id="motion-validate")
                    m_mora = gr.Checkbox(p.use_mora, label="MoRA", elem_id="motion-mora")
                with gr.Row():
                    m_train = gr.Button("Train", variant="primary", elem_id="motion-train")
                    m_resume = gr.Button("Resume", elem_id="motion-resume")
                    m_cancel = gr.Button("Cancel", variant="stop", elem_id="motion-cancel")
                m_train_notice = notice("motion-train-notice")
                m_confirm = gr.State(None)
                m_job = gr.Markdown("", elem_id="motion-job", elem_classes="status-line")
                m_progress = gr.HTML(progress_bar(0, "motion-progress-bar"))
                with gr.Row():
                    m_plot = gr.HTML(loss_svg([], M_PLOT, "motion-curves"), elem_id="motion-losses")
                    m_val = gr.Video(label="Latest validation video", elem_id="motion-validation", height=240,
                                     interactive=False)
                m_downloads = gr.HTML("", elem_id="motion-downloads")

            # ----------------------------------------------------------------------------- generate
            with gr.Tab("Generate", id="generate", elem_id="tab-generate"):
                gr.Markdown("Pick a subject LoRA and a motion LoRA from the work folder's runs and write a prompt "
                            "with V* (the subject) and S* (the motion).")
                gr.Markdown("**Library** (finished LoRAs)", elem_id="generate-library-title")
                g_library = gr.HTML(h.library_html(app), elem_id="generate-library")
                with gr.Row():
                    g_subject = gr.Dropdown(["none"], value="none", label="Subject LoRA", elem_id="generate-subject")
                    g_motion = gr.Dropdown(["none"], value="none", label="Motion LoRA", elem_id="generate-motion")
                    g_preset = recipe_choice("generate-preset", p.recipe, "Preset (a recipe's sampler)")
                g_prompt = gr.Textbox(ex.prompt if ex else "a V* dog doing S* on a beach", label="Prompt",
                                      elem_id="generate-prompt")
                fields = h.preset_fields(app)
                with gr.Accordion("Negative prompt (the recipe's)", open=False, elem_id="generate-negative-box"):
                    g_negative_note = gr.Markdown(negative_prompt_note(fields["negative_prompt"]),
                                                  elem_id="generate-negative-note")
                    g_negative = gr.Textbox(fields["negative_prompt"] or "", label="Negative prompt",
                                            elem_id="generate-negative", lines=3, max_lines=6)
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
                g_notice = notice("generate-notice")
                g_confirm = gr.State(None)
                g_status = gr.Markdown("", elem_id="generate-status", elem_classes="status-line")
                g_progress = gr.HTML(progress_bar(0, "generate-progress-bar"))
                with gr.Row():
                    g_result = gr.Video(label="Result", elem_id="generate-result", autoplay=True, loop=True,
                                        interactive=False, height=300)
                    g_base = gr.Video(label="Baseline (no LoRA, same seed)", elem_id="generate-baseline-video",
                                      autoplay=True, loop=True, interactive=False, height=300)
                g_downloads = gr.HTML("", elem_id="generate-downloads")
                with gr.Accordion("Settings saved with the video", open=False):
                    g_settings = gr.Code(language="json", elem_id="generate-settings")
                gr.Markdown("### Past generations")
                g_videos = gr.HTML(h.past_generations_html(app), elem_id="generate-past")

            # ----------------------------------------------------------------------------- evaluate
            with gr.Tab("Evaluate", id="evaluate", elem_id="tab-evaluate"):
                gr.Markdown("Score generated videos with the paper's metrics. A metric whose model cannot load, or "
                            "whose input the videos lack, is skipped and the reason is shown.")
                e_videos = gr.CheckboxGroup([], label="Generated videos", elem_id="evaluate-videos")
                e_metrics = gr.CheckboxGroup(h.metric_choices(), value=h.metric_choices(), label="Metrics",
                                             elem_id="evaluate-metrics")
                e_tracker = gr.Radio([(v, k) for k, v in h.TRACKER_CHOICES.items()], value=h.default_tracker(app),
                                     label="Motion Fidelity's tracker (its numbers depend on it; the table names it)",
                                     elem_id="evaluate-tracker")
                e_go = gr.Button("Evaluate", variant="primary", elem_id="evaluate-go")
                e_notice = notice("evaluate-notice")
                e_status = gr.Markdown("", elem_id="evaluate-status", elem_classes="status-line")
                e_table = gr.Code(label="Table (mean ± 95% interval)", elem_id="evaluate-table")
                e_skipped = gr.Markdown("", elem_id="evaluate-skipped")
                e_downloads = gr.HTML("", elem_id="evaluate-downloads")
                e_report = gr.HTML("", elem_id="evaluate-report")

            # --------------------------------------------------------------------------------- jobs
            with gr.Tab("Jobs", id="jobs", elem_id="tab-jobs"):
                gr.Markdown("Every job of the work folder, one running at a time. Cancel a queued or running job, "
                            "resume a stopped training from its last checkpoint, remove a job (an unfinished one "
                            "with what it left behind; a finished one's LoRA or videos stay).")
                j_select = gr.Dropdown([], label="Job", elem_id="job-select")
                j_status = gr.Markdown("", elem_id="job-status", elem_classes="status-line")
                j_progress = gr.HTML(progress_bar(0, "job-progress-bar"))
                with gr.Row():
                    j_cancel = gr.Button("Cancel", variant="stop", elem_id="job-cancel", interactive=False)
                    j_resume = gr.Button("Resume", elem_id="job-resume", interactive=False)
                    j_remove = gr.Button("Remove", elem_id="job-remove", interactive=False)
                j_notice = notice("job-notice")
                with gr.Row():
                    j_log = gr.Code(label="Log (the newest lines)", elem_id="job-log", lines=14)
                    j_sample = gr.Video(label="Newest sample", elem_id="job-sample", height=260, interactive=False)
                j_downloads = gr.HTML("", elem_id="job-downloads")
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

        def clip_of(name):
            try:
                clips = sorted((app.wd.motion(name) / "data").glob("*.mp4"))
            except (SmraboothError, OSError):
                return None
            return str(clips[0]) if clips else None

        def on_add(name, photos, masks, source, obj):
            def run():
                h.add_subject_photos(app, name, photos, masks)
                return h.prepare_subject_data(app, name, source, obj)
            msg, err, _ = attempt(run)
            return msg or err, photos_out(name), sheet_of(name), None, None

        s_add.click(on_add, [s_name, s_photos, s_masks, s_source, s_object],
                    [s_status, s_gallery, s_sheet, s_photos, s_masks])

        def on_example():
            out, err, _ = attempt(h.use_example_subject, app)
            if out is None:
                return err, gr.skip(), gr.skip(), gr.skip(), gr.skip()
            name = out[0]
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
            msg, err, _ = attempt(run)
            return msg or err, photos_out(name), sheet_of(name), None

        s_remove.click(on_remove, [s_name, s_selected, s_source, s_object],
                       [s_remove_notice, s_gallery, s_sheet, s_selected])

        def train_click(kind):
            def click(name, recipe, steps, rank, lr, align, validate, confirm):
                fn = h.train_subject if kind == "subject" else h.train_motion
                _, msg, token = attempt(fn, app, name, steps, rank, lr, align, validate, recipe, confirm)
                return msg, token  # success: no notice, the job's own line shows it queued
            return click

        def resume_click(kind):
            def click(name):
                _, msg, _ = attempt(h.resume_training, app, kind, name)
                return msg
            return click

        def recipe_change(kind):
            def change(recipe):
                fields, _, _ = attempt(h.train_fields, app, kind, recipe)
                return [gr.skip()] * 3 if fields is None else [fields[k] for k in ("steps", "rank", "lr")]
            return change

        def stale(fields, line) -> None:
            """A changed form makes its line stale: cleared in the browser at once (a server call could land after
            the next click's answer). A warning's token names its settings, so it needs no clearing."""
            for field in fields:
                field.change(None, None, [line], js="() => ''", show_progress="hidden")

        for kind, name, recipe, steps, rank, lr, align, validate, train, resume, cancel, note, confirm in (
                ("subject", s_name, s_recipe, s_steps, s_rank, s_lr, s_sura, s_validate, s_train, s_resume,
                 s_cancel, s_train_notice, s_confirm),
                ("motion", m_name, m_recipe, m_steps, m_rank, m_lr, m_mora, m_validate, m_train, m_resume,
                 m_cancel, m_train_notice, m_confirm)):
            train.click(train_click(kind), [name, recipe, steps, rank, lr, align, validate, confirm], [note, confirm])
            resume.click(resume_click(kind), [name], [note])
            cancel.click(lambda kind=kind: attempt(h.cancel_latest, app, f"train_{kind}")[1], None, [note])
            recipe.change(recipe_change(kind), [recipe], [steps, rank, lr])
            stale([name, recipe, steps, rank, lr, align, validate], note)
        stale([s_name], s_status)
        stale([m_name], m_status)

        def on_prepare(name, clip, caption, start, frames, fps):
            out, err, _ = attempt(h.prepare_motion_clip, app, name, clip, caption, start, frames, fps)
            if out is None:
                return err, gr.skip(), None
            return (f"prepared {out.name}: {int(frames)} frames at {fps:g} fps from {float(start or 0):g} s", str(out),
                    None)

        m_prepare.click(on_prepare, [m_name, m_clip, m_caption, m_start, m_frames, m_fps],
                        [m_status, m_preview, m_clip])

        def on_motion_example():
            out, err, _ = attempt(h.use_example_motion, app)
            if out is None:
                return err, gr.skip(), gr.skip(), gr.skip()
            name, clip, caption = out
            return f"prepared the example motion ({name})", name, caption, str(clip)

        m_example.click(on_motion_example, None, [m_status, m_name, m_caption, m_preview])

        def on_preset(preset):
            fields, _, _ = attempt(h.preset_fields, app, preset)
            if fields is None:
                return [gr.skip()] * (len(h.PAGE_FIELDS) + 1)
            return [*[fields[k] or "" if k == "negative_prompt" else fields[k] for k in h.PAGE_FIELDS],
                    negative_prompt_note(fields["negative_prompt"])]

        g_inputs = [g_subject, g_motion, g_prompt, g_negative, g_preset, g_steps, g_guidance, g_frames, g_height,
                    g_width, g_early, g_sscale, g_mscale, g_tpoint, g_seed, g_baseline]
        g_preset.change(on_preset, [g_preset], [g_steps, g_guidance, g_frames, g_height, g_width, g_early, g_sscale,
                                                g_mscale, g_negative, g_negative_note])

        def on_generate(subject, motion, prompt, negative, preset, steps, guidance, frames, height, width, early,
                        sscale, mscale, tpoint, seed, baseline, confirm):
            _, msg, token = attempt(h.generate, app, subject, motion, prompt, seed, steps, guidance, early, sscale,
                                    mscale, tpoint, frames, height, width, baseline, preset, negative, confirm)
            return msg, token

        g_go.click(on_generate, [*g_inputs, g_confirm], [g_notice, g_confirm])
        stale(g_inputs, g_notice)

        def on_evaluate(videos, metrics, tracker, confirm):
            _, msg, token = attempt(h.evaluate, app, videos, metrics, tracker, confirm)
            return msg, token

        e_confirm = gr.State(None)
        e_go.click(on_evaluate, [e_videos, e_metrics, e_tracker, e_confirm], [e_notice, e_confirm])
        stale([e_videos, e_metrics, e_tracker], e_notice)

        def job_action(fn):
            def click(job_id):
                out, err, _ = attempt(fn, app, job_id)
                return err or (out if isinstance(out, str) else f"queued again: {out['title']}")
            return click

        j_cancel.click(job_action(h.cancel_job), [j_select], [j_notice])
        j_resume.click(job_action(lambda a, job_id: h.resume_training(a, "", job_id=job_id)), [j_select], [j_notice])
        j_remove.click(job_action(h.remove_job), [j_select], [j_notice])
        stale([j_select], j_notice)

        # ------------------------------------------------------------------------- live state
        live = {"s_mask_job": s_mask_job, "s_gallery": s_gallery, "s_sheet": s_sheet, "s_job": s_job,
                "s_progress": s_progress, "s_plot": s_plot, "s_val": s_val, "s_downloads": s_downloads,
                "m_preview": m_preview, "m_job": m_job, "m_progress": m_progress, "m_plot": m_plot, "m_val": m_val,
                "m_flow": m_flow, "m_downloads": m_downloads, "g_library": g_library, "g_subject": g_subject,
                "g_motion": g_motion, "g_status": g_status, "g_progress": g_progress, "g_result": g_result,
                "g_base": g_base, "g_downloads": g_downloads, "g_settings": g_settings, "g_videos": g_videos,
                "e_videos": e_videos, "e_status": e_status, "e_table": e_table, "e_skipped": e_skipped,
                "e_downloads": e_downloads, "e_report": e_report, "j_select": j_select, "j_status": j_status,
                "j_progress": j_progress, "j_cancel": j_cancel, "j_resume": j_resume, "j_remove": j_remove,
                "j_log": j_log, "j_sample": j_sample, "j_downloads": j_downloads, "jobs": jobs}
        keys = list(live)

        def mtime(path):
            return path and os.path.getmtime(path)

        def state(subject_choice, motion_choice, subject_name, motion_name, job_choice) -> dict:
            sv, mv = h.train_view(app, "train_subject"), h.train_view(app, "train_motion")
            gv, ev = h.generate_view(app), h.evaluate_view(app)
            subjects, motions = h.library(app, "subject"), h.library(app, "motion")
            s_labels, m_labels = ["none", *[e.label for e in subjects]], ["none", *[e.label for e in motions]]

            def pick(choice, labels):  # a new LoRA is picked for the user when nothing is picked yet
                return choice if choice in labels and choice != "none" else labels[min(1, len(labels) - 1)]

            choices = h.job_choices(app)
            ids = [c[1] for c in choices]
            running = next((j["id"] for j in app.queue.list() if j["status"] in ("running", "queued")), None)
            job_id = job_choice if job_choice in ids else (running or (ids[0] if ids else None))
            jd = h.job_detail(app, job_id)
            sheet, clip = sheet_of(subject_name), clip_of(motion_name)
            return {
                "s_mask_job": h.mask_tool_view(app, subject_name),
                "s_gallery": ("gallery", photos_out(subject_name)),
                # files with their time: the mask tool and "Trim and prepare" write them again under one name
                "s_sheet": ("file", sheet, mtime(sheet)),
                "s_job": sv.status, "s_progress": progress_bar(sv.progress, "subject-progress-bar"),
                "s_plot": loss_svg(sv.losses, S_PLOT, "subject-curves"), "s_val": sv.validation, "s_downloads": sv.downloads,
                "m_preview": ("file", clip, mtime(clip)),
                "m_job": mv.status, "m_progress": progress_bar(mv.progress, "motion-progress-bar"),
                "m_plot": loss_svg(mv.losses, M_PLOT, "motion-curves"), "m_val": mv.validation, "m_flow": mv.flow_video,
                "m_downloads": mv.downloads,
                "g_library": h.library_html(app),
                "g_subject": ("dd", s_labels, pick(subject_choice, s_labels)),
                "g_motion": ("dd", m_labels, pick(motion_choice, m_labels)),
                "g_status": gv.status, "g_progress": progress_bar(gv.progress, "generate-progress-bar"),
                "g_result": ("video", gv.result, gv.result_label), "g_base": ("video", gv.baseline, gv.baseline_label),
                "g_downloads": gv.downloads, "g_settings": gv.settings, "g_videos": h.past_generations_html(app),
                "e_videos": ("cb", h.generated_videos(app)), "e_status": ev.status, "e_table": ev.table,
                "e_skipped": ev.skipped, "e_downloads": ev.downloads, "e_report": ev.report_html,
                "j_select": ("dd", choices, job_id), "j_status": jd.status,
                "j_progress": progress_bar(jd.progress, "job-progress-bar"),
                "j_cancel": ("button", jd.can_cancel), "j_resume": ("button", jd.can_resume),
                "j_remove": ("button", jd.can_remove), "j_log": jd.log,
                "j_sample": jd.samples[-1] if jd.samples else None, "j_downloads": jd.downloads,
                "jobs": ("jobs", h.jobs_table(app)),
            }

        def render(value):
            kind = value[0] if isinstance(value, tuple) and value else None
            if kind in ("file", "gallery"):
                return value[1]
            if kind == "dd":
                return gr.update(choices=value[1], value=value[2])
            if kind == "cb":
                return gr.update(choices=value[1])
            if kind == "video":
                return gr.update(value=value[1], label=value[2])
            if kind == "button":
                return gr.update(interactive=value[1])
            if kind == "jobs":
                return value[1] or [["", "", "", ""]]
            return value

        def refresh(last, subject_choice, motion_choice, subject_name, motion_name, job_choice):
            now = state(subject_choice, motion_choice, subject_name, motion_name, job_choice)
            out = []
            for k in keys:
                out.append(gr.skip() if k in last and last[k] == now[k] else render(now[k]))
            return [now, *out]

        inputs = [g_subject, g_motion, s_name, m_name, j_select]
        timer = gr.Timer(1.0)
        timer.tick(refresh, [seen, *inputs], [seen, *live.values()], show_progress="hidden")
        def names():  # a reloaded page comes back to the subject and motion worked on last
            subject, motion = h.recent_names(app)
            return subject or gr.skip(), motion or gr.skip()

        demo.load(names, None, [s_name, m_name], show_progress="hidden").then(
            lambda *a: refresh({}, *a), inputs, [seen, *live.values()], show_progress="hidden")
    return demo
