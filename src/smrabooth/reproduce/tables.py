"""Table 1 and the ablation table, from the evaluation jobs' scores."""

from __future__ import annotations

from pathlib import Path

from .jobs import METHODS, TABLES, Job, ReproduceConfig


# ---------------------------------------------------------------- the tables
def write_tables(cfg: ReproduceConfig, out: Path, jobs: list[Job]) -> list[Path]:
    """Table 1 and the ablation table from the per-video scores: markdown, CSV and the HTML report each."""
    from ..metrics.report import format_table, write_report

    evals = [j for j in jobs if j.kind == "evaluate"]
    from ..readers import read_json

    rows = [read_json(out / j.name, dict, "a score file") for j in evals]
    metrics = evals[0].spec["metrics"]
    written = []
    for table, title in TABLES.items():
        methods = [m for m in cfg.methods if table in METHODS[m].tables]
        if not methods:
            continue
        these = [r for r in rows if r["method"] in methods]
        skipped = {k: v for r in these for k, v in r.pop("skipped", {}).items()}
        header = {"title": title, "methods": {m: METHODS[m].label for m in methods}, "model": cfg.model,
                  "data": cfg.data, "seeds": list(cfg.seeds), "recipe": cfg.recipe, **evals[0].spec["settings"]}
        folder = out / "tables" / table
        res = write_report(folder, header, these, metrics, skipped)
        active = [c for c in metrics if c not in skipped]
        md = folder / "table.md"
        md.write_text(f"# {title}\n\n{format_table(res['summary'], active, markdown=True)}\n")
        written += [md, res["paths"]["table_csv"], res["paths"]["html"]]
    return written
