"""User-study kit (supplementary 2.6): a static web page that shows, per case, the reference images, the
reference video and the candidate videos in a random, hidden order, asks the paper's four 1-5 questions,
and saves the answers as a JSON file; plus the tally of those files into the paper's user-study table."""

from __future__ import annotations

import html
import json
import random
import re
import secrets
import shutil
from pathlib import Path

from ..errors import SmraboothError
from .report import write_text_atomic

QUESTIONS = {
    "prompt_alignment": ("Prompt Alignment", "How accurately does the video match the text description?"),
    "motion_similarity": ("Motion Similarity", "How consistent is the video's motion with the reference video?"),
    "appearance_similarity": ("Appearance Similarity",
                              "How similar is the main subject to the subject in the reference images?"),
    "video_quality": ("Video Quality", "How good is the overall visual quality of the video?"),
}


PAGE_DIR = "page"  # the only folder to serve; key.json and answers/ sit beside it, out of reach of the server
_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def json_for_script(data) -> str:
    """JSON that is safe as the text of a <script type="application/json"> element: no '<', '>' or '&' (so
    no prompt can close the element or open a comment in it) and no U+2028/2029; JSON.parse reads it back."""
    return re.sub("[<>&\u2028\u2029]", lambda m: _ESCAPES[m.group()], json.dumps(data))


def render_page(title: str, data: dict) -> str:
    """The page with its placeholders filled in one pass, so text from the manifest or the title is never
    scanned again for placeholders."""
    fill = {"__TITLE__": html.escape(title), "__DATA__": json_for_script(data)}
    return re.sub("__TITLE__|__DATA__", lambda m: fill[m.group()], PAGE)


def check_video(path: Path) -> None:
    """A file the study page may show as a video: a video suffix, and a container holding a video stream."""
    import av

    from ..data.folders import VIDEO_EXTS

    path = Path(path)
    if path.suffix.lower() not in VIDEO_EXTS:
        raise SmraboothError(f"{path} is not a video ({', '.join(sorted(VIDEO_EXTS))}): the study page would "
                             "publish it as one")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise SmraboothError(f"{path} holds no video stream: the study page would publish it as a video")
    except (av.error.FFmpegError, OSError, ValueError) as e:
        raise SmraboothError(f"{path} is not a readable video ({' '.join(str(e).split())})") from None


def check_image(path: Path) -> None:
    """A file the study page may show as a reference image: an image that decodes."""
    from ..readers import open_image

    open_image(path, "reference image")


def _copy(src: Path, media: Path, name: str) -> str:
    dst = media / f"{name}{src.suffix.lower()}"
    shutil.copyfile(src, dst)
    return f"media/{dst.name}"


def build_study(items: list, out_dir, seed: int = 0, title: str = "Video study") -> Path:
    """items: EvalItem rows of a manifest. A case = one (prompt, subject images, reference video);
    its candidates are the methods' videos for it. Writes page/ (index.html and media/: the only folder to
    publish), key.json (which hidden video is which method) and answers/. The study id is random per build,
    so answers of one build are never credited by another build's key; `seed` fixes the candidate order."""
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise SmraboothError(f"{out} exists and is not empty: choose another --out")
    if not items:
        raise SmraboothError("the manifest has no rows")
    for it in items:  # the page is published: only what it is meant to show goes into it
        check_video(it.video)
        if it.reference_video:
            check_video(it.reference_video)
        for image in it.subject_images:
            check_image(image)
    site = out / PAGE_DIR
    media = site / "media"
    media.mkdir(parents=True)
    (out / "answers").mkdir()
    groups: dict[tuple, list] = {}
    for it in items:
        key = (it.prompt or "", tuple(map(str, it.subject_images)), str(it.reference_video or ""))
        groups.setdefault(key, []).append(it)
    rng = random.Random(seed)
    study_id = secrets.token_hex(8)
    cases, key_cases = [], []
    for ci, ((prompt, _, _), members) in enumerate(groups.items()):
        cid = f"case{ci + 1:02d}"
        methods = [m.method for m in members]
        dup = {m for m in methods if methods.count(m) > 1}
        if dup:
            raise SmraboothError(f"method(s) {', '.join(sorted(dup))} have two videos for the same case "
                                 f"(prompt {prompt!r}); one video per method and case")
        order = members[:]
        rng.shuffle(order)
        first = members[0]
        refs = [_copy(p, media, f"{cid}_ref{k}") for k, p in enumerate(first.subject_images)]
        ref_video = _copy(first.reference_video, media, f"{cid}_motion") if first.reference_video else None
        cands, mapping = [], {}
        for k, it in enumerate(order):
            cand = f"{cid}-v{k + 1}"  # opaque: neither the id nor the file name tells the method
            cands.append({"id": cand, "label": f"Video {chr(65 + k)}", "src": _copy(it.video, media, cand)})
            mapping[cand] = it.method
        cases.append({"id": cid, "prompt": prompt, "reference_images": refs, "reference_video": ref_video,
                      "candidates": cands})
        key_cases.append({"id": cid, "prompt": prompt, "candidates": mapping})
    data = {"study_id": study_id, "title": title, "questions": [{"id": k, "label": v[0], "text": v[1]}
                                                                for k, v in QUESTIONS.items()], "cases": cases}
    methods = list(dict.fromkeys(it.method for it in items))  # manifest order, for the table
    write_text_atomic(out / "key.json", json.dumps({"study_id": study_id, "methods": methods, "cases": key_cases},
                                                   indent=2))
    write_text_atomic(site / "index.html", render_page(title, data))
    return out


def _one_answers_file(f: Path) -> dict:
    """An answers file, checked: a one-line error naming the file for anything malformed."""
    from ..readers import read_json

    try:
        a = read_json(f, None)
    except SmraboothError as e:
        raise SmraboothError(f"{f} is not a readable answers file ({str(e).removeprefix(str(f)).strip(' :')})") \
            from None
    if not isinstance(a, dict) or not isinstance(a.get("study_id"), str) or not isinstance(a.get("ratings"), list):
        raise SmraboothError(f"{f} is not an answers file of a smrabooth study (needs study_id and a list of ratings)")
    who = a.get("participant", f.stem)
    if not isinstance(who, str) or not who.strip():
        raise SmraboothError(f"{f}: participant must be a non-empty name or id, got {who!r}")
    seen = set()
    for i, r in enumerate(a["ratings"]):
        where = f"{f}: rating {i + 1}"
        if not isinstance(r, dict) or not all(isinstance(r.get(k), str) for k in ("candidate", "question")):
            raise SmraboothError(f"{where} needs a candidate and a question (got {r!r:.80})")
        v = r.get("rating")
        # json gives int for 4 and float for 4.0 or 4.9; bool is an int in Python but not a rating
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 5:
            raise SmraboothError(f"{where} ({r['candidate']}/{r['question']}): the rating must be a whole number "
                                 f"1-5, got {v!r}")
        pair = (r["candidate"], r["question"])
        if pair in seen:
            raise SmraboothError(f"{where}: {pair[0]}/{pair[1]} is rated twice in this file; keep one rating")
        seen.add(pair)
    return {"file": str(f), "study_id": a["study_id"], "participant": who.strip(), "ratings": a["ratings"]}


def load_answers(files) -> list[dict]:
    """Every answers file, checked; the same file twice, or two files of one participant, are rejected."""
    answers, paths, owner = [], {}, {}
    for f in map(Path, files):
        real = f.resolve()
        if real in paths:
            raise SmraboothError(f"{f} is given twice (also as {paths[real]}); give each answers file once")
        paths[real] = f
        a = _one_answers_file(f)
        if a["participant"] in owner:
            raise SmraboothError(f"{f} and {owner[a['participant']]} both hold the answers of participant "
                                 f"{a['participant']!r}; keep one file per participant")
        owner[a["participant"]] = f
        answers.append(a)
    if not answers:
        raise SmraboothError("no answer files given")
    return answers


def find_key(files, key_path=None) -> Path:
    if key_path:
        return Path(key_path)
    for f in map(Path, files):
        for cand in (f.parent / "key.json", f.parent.parent / "key.json"):
            if cand.is_file():
                return cand
    raise SmraboothError("cannot find the study's key.json next to the answers; pass --key DIR/key.json")


def tally(files, key_path=None) -> tuple[dict, list[dict]]:
    """Per method and question: mean and 95% interval over PARTICIPANTS (each participant's mean rating is
    one value: the ratings of one person are not independent), plus "ratings", the number of ratings.
    Returns (summary, flat ratings)."""
    from .report import mean_ci

    answers = load_answers(files)
    key_file = find_key(files, key_path)
    from ..readers import read_json

    try:
        key = read_json(key_file, dict, "a study key")
        method_of = {cand: m for c in key["cases"] for cand, m in c["candidates"].items()}
        if not all(isinstance(k, str) and isinstance(m, str) for k, m in method_of.items()):
            raise TypeError("candidates must map ids to method names")
    except (KeyError, TypeError, AttributeError) as e:
        raise SmraboothError(f"{key_file} is not a readable study key ({type(e).__name__}: {e})") from None
    flat = []
    for a in answers:
        if a["study_id"] != key.get("study_id"):
            raise SmraboothError(f"{a['file']} answers study {a['study_id']}, but {key_file} is study "
                                 f"{key.get('study_id')}: use the key.json written with that study's page")
        for r in a["ratings"]:
            if r["candidate"] not in method_of or r["question"] not in QUESTIONS:
                raise SmraboothError(f"{a['file']}: unknown candidate/question {r['candidate']}/{r['question']}")
            flat.append({"method": method_of[r["candidate"]], "participant": a["participant"],
                         "question": r["question"], "rating": r["rating"]})
    order = key.get("methods") or list(dict.fromkeys(method_of.values()))  # manifest order, not the shuffled one
    summary = {}
    for m in order:
        mine = [r for r in flat if r["method"] == m]
        if not mine:
            continue
        summary[m] = {}
        for q in QUESTIONS:
            per_person: dict[str, list[int]] = {}
            for r in mine:
                if r["question"] == q:
                    per_person.setdefault(r["participant"], []).append(r["rating"])
            stats = mean_ci([sum(v) / len(v) for v in per_person.values()])
            summary[m][q] = {**stats, "ratings": sum(len(v) for v in per_person.values())}
    return summary, flat


PAGE = r"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>__TITLE__</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font-family:system-ui,sans-serif;margin:20px auto;max-width:1200px;color:#222;padding:0 12px}
.case{border:1px solid #ccc;border-radius:8px;padding:12px;margin:18px 0}
.refs img{height:140px;margin-right:6px;border:1px solid #ddd}.refs video{height:160px}
.cands{display:flex;flex-wrap:wrap;gap:14px}.cand{border:1px solid #eee;padding:8px;border-radius:6px}
.cand video,.cand img.vid{width:320px;display:block}.q{margin:4px 0;font-size:14px}.q span.t{display:inline-block;width:170px}
.q label{margin-right:6px}#status{font-weight:600;margin:10px 0}.missing{background:#fff3f3}
</style></head><body>
<h1>__TITLE__</h1>
<p>For every case, look at the reference images (the subject), the reference video (the motion) and each
candidate video, then rate each video from 1 (poor) to 5 (excellent) on the four questions.
Click <b>Save answers</b> at the end: a JSON file is downloaded; send it to the study organiser.</p>
<p><label>Your name or id: <input id="participant" autocomplete="off"></label></p>
<div id="cases"></div>
<button id="save">Save answers</button>
<div id="status"></div>
<pre id="answers-json" hidden></pre>
<script id="study-data" type="application/json">__DATA__</script>
<script>
const DATA = JSON.parse(document.getElementById('study-data').textContent);
const isImage = s => /\.(gif|png|jpe?g|webp)$/i.test(s);
function media(src, cls) {
  if (isImage(src)) { const i = document.createElement('img'); i.src = src; i.className = cls || ''; return i; }
  const v = document.createElement('video'); v.src = src; v.controls = true; v.loop = true; v.muted = true;
  v.autoplay = true; v.playsInline = true; return v;
}
const root = document.getElementById('cases');
DATA.cases.forEach((c, ci) => {
  const box = document.createElement('div'); box.className = 'case'; box.id = c.id;
  box.innerHTML = `<h2>Case ${ci + 1} of ${DATA.cases.length}</h2>`;
  const p = document.createElement('p'); p.innerHTML = '<b>Prompt:</b> '; p.append(c.prompt || '(none)'); box.append(p);
  const refs = document.createElement('div'); refs.className = 'refs';
  if (c.reference_images.length) { refs.append('Reference images: '); c.reference_images.forEach(s => refs.append(media(s))); }
  if (c.reference_video) { refs.append(document.createElement('br'), 'Reference video: ', media(c.reference_video, 'vid')); }
  box.append(refs);
  const cands = document.createElement('div'); cands.className = 'cands';
  c.candidates.forEach(v => {
    const d = document.createElement('div'); d.className = 'cand'; d.dataset.candidate = v.id;
    const h = document.createElement('h3'); h.textContent = v.label; d.append(h, media(v.src, 'vid'));
    DATA.questions.forEach(q => {
      const row = document.createElement('div'); row.className = 'q'; row.title = q.text;
      const t = document.createElement('span'); t.className = 't'; t.textContent = q.label; row.append(t);
      for (let r = 1; r <= 5; r++) {
        const l = document.createElement('label'); const i = document.createElement('input');
        i.type = 'radio'; i.name = `${v.id}|${q.id}`; i.value = r; l.append(i, ' ' + r); row.append(l);
      }
      d.append(row);
    });
    cands.append(d);
  });
  box.append(cands); root.append(box);
});
document.getElementById('save').addEventListener('click', () => {
  const ratings = [], missing = [];
  document.querySelectorAll('.q').forEach(r => r.classList.remove('missing'));
  DATA.cases.forEach(c => c.candidates.forEach(v => DATA.questions.forEach(q => {
    const sel = document.querySelector(`input[name="${v.id}|${q.id}"]:checked`);
    if (sel) ratings.push({case: c.id, candidate: v.id, question: q.id, rating: Number(sel.value)});
    else { missing.push(`${v.id}|${q.id}`);
           document.querySelector(`input[name="${v.id}|${q.id}"]`).closest('.q').classList.add('missing'); }
  })));
  const status = document.getElementById('status');
  const who = document.getElementById('participant').value.trim();
  if (!who) { status.textContent = 'Please enter your name or id first.'; return; }
  if (missing.length) { status.textContent = `${missing.length} ratings are missing (highlighted).`; return; }
  const out = {study_id: DATA.study_id, participant: who, submitted: new Date().toISOString(), ratings: ratings};
  const text = JSON.stringify(out, null, 1);
  const pre = document.getElementById('answers-json'); pre.textContent = text; pre.hidden = false;
  const a = document.createElement('a');
  a.href = URL.createObjectURL(new Blob([text], {type: 'application/json'}));
  a.download = `answers-${who.replace(/[^A-Za-z0-9_-]/g, '_')}.json`;
  document.body.append(a); a.click(); a.remove();
  status.textContent = `Saved ${ratings.length} ratings. Thank you!`;
});
</script></body></html>
"""
