"""report.md and its PNG plots, from the content of evaluation.json and the result records.

Per-field tables come first: a per-document mean hides which fields fail (on bank statements two of
five fields are nearly always right, so the document mean has a floor). Plots use matplotlib's Figure
API with the Agg canvas: no display and no global pyplot state.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from docvlm.timings import times_by_type
from docvlm.outputs import atomic_write_text

PLOTS_DIR = "plots"
WORST_SHOWN = 10  # lowest-scoring documents listed in the report


def write_report(evaluation: dict[str, Any], records: list[dict[str, Any]], out_dir: Path) -> Path:
    """Write out_dir/report.md and out_dir/plots/*.png; return the report's path."""
    out_dir = Path(out_dir)
    plots = _write_plots(evaluation, records, out_dir / PLOTS_DIR)
    path = out_dir / "report.md"
    atomic_write_text(path, _markdown(evaluation, plots) + _grounding_section(records))
    return path


# ---------------------------------------------------------------- markdown

def _grounding_section(records: list[dict[str, Any]]) -> str:
    """validation.grounding: extracted values that the page's OCR text does not show, by field."""
    checked = [r for r in records if r.get("ungrounded_fields") is not None]
    if not checked:
        return ""
    counts: dict[str, int] = {}
    for r in checked:
        for name in r["ungrounded_fields"]:
            counts[name] = counts.get(name, 0) + 1
    flagged = sum(bool(r["ungrounded_fields"]) for r in checked)
    lines = ["## Grounding", "", f"Documents checked against their page's OCR text: {len(checked)}; "
             f"with values not found on the page: {flagged}.", ""]
    lines += _table(["field", "documents with the value not on the page"],
                    [[name, str(n)] for name, n in sorted(counts.items(), key=lambda kv: -kv[1])])
    return "\n".join(lines)


def _num(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _ci(ci: list[float] | None) -> str:
    return "–" if ci is None else f"[{ci[0]:.3f}, {ci[1]:.3f}]"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows] + [""]


def _markdown(ev: dict[str, Any], plots: dict[str, str]) -> str:
    overall = ev["overall"]
    lines = ["# Evaluation report", ""] + _model_lines(ev.get("model")) + [
        f"Ground truth: `{ev['ground_truth']}`. Documents scored: {overall['documents']}; "
        f"without ground truth: {len(ev['documents_without_ground_truth'])}; "
        f"with errors: {len(ev['documents_with_errors'])}.", "",
    ]
    if ev.get("ground_truth_partial"):
        lines += ["The ground truth is partial: each field is scored only on the documents whose ground truth "
                  "labels it (column `n`); fields it never labels are listed under their type, not scored.", ""]
    lines += _field_section(ev, plots)
    lines += _type_section(ev)
    lines += _confusion_section(ev, plots)
    lines += _timing_section(ev, plots)
    lines += _document_section(ev)
    lines += ["## Definitions", ""] + [f"- **{k}**: {v}" for k, v in ev["definitions"].items()] + [""]
    return "\n".join(lines)


def _model_lines(model: dict[str, Any] | None) -> list[str]:
    if not model:
        return []
    if model.get("random_weights"):
        return [f"**Model `{model['name']}` has random weights: its answers are meaningless, and so are the "
                "scores below.** It shows that the pipeline runs end to end, not how well docvlm reads "
                "documents; use a real model (e.g. `model=ocr`) for that.", ""]
    return [f"Model: `{model['name']}`.", ""]


def _field_section(ev: dict[str, Any], plots: dict[str, str]) -> list[str]:
    lines = ["## Field F1 by document type", "",
             "F1 by the project's comparators; `strict` and `similar` are the strict comparisons quoted "
             "for real documents (see Definitions).", ""]
    if "field_f1" in plots:
        lines += [f"![per-field F1]({plots['field_f1']})", ""]
    header = ["field", "mean F1", "SD", "95% CI", "n", "strict", "similar"]
    for doc_type, fields in ev["per_field"].items():
        strict = (ev.get("strict") or {}).get(doc_type, {})
        rows = [[name, _num(s["mean"]), _num(s["sd"]), _ci(s["ci95"]), str(s["n"]),
                 _num(strict.get(name, {}).get("strict")), _num(strict.get(name, {}).get("similar"))]
                for name, s in fields.items()]
        scored = (ev.get("scored_fields") or {}).get(doc_type, {})
        title = f"### {doc_type} ({_count(scored['documents'], 'document')})" if scored else f"### {doc_type}"
        lines += [title, ""] + _table(header, rows)
        if scored.get("not_labelled"):
            lines += [f"Not labelled in the ground truth (not scored): {', '.join(scored['not_labelled'])}.", ""]
    return lines


def _type_section(ev: dict[str, Any]) -> list[str]:
    o = ev["overall"]
    rows = [[t, str(s["documents"]), _num(s["macro_f1"]), _num(s["micro_f1"]),
             _num(s["document_f1_mean"]), _num(s["document_f1_median"])] for t, s in ev["per_type"].items()]
    rows.append(["**all**", str(o["documents"]), _num(o["macro_f1"]), _num(o["micro_f1"]),
                 _num(o["document_f1_mean"]), _num(o["document_f1_median"])])
    header = ["true type", "documents", "macro F1", "micro F1", "document F1 mean", "document F1 median"]
    return ["## By document type", ""] + _table(header, rows) + [
        f"Document-type accuracy: {_num(o['type_accuracy'])}. "
        f"95% CI of the mean document F1: {_ci(o['document_f1_ci95'])}.", ""]


def _confusion_section(ev: dict[str, Any], plots: dict[str, str]) -> list[str]:
    cm = ev["confusion_matrix"]
    lines = ["## Document-type confusion (rows: true, columns: predicted)", ""]
    if "confusion" in plots:
        lines += [f"![confusion matrix]({plots['confusion']})", ""]
    rows = [[t] + [str(c) for c in row] for t, row in zip(cm["true"], cm["matrix"])]
    return lines + _table(["true \\ predicted"] + cm["predicted"], rows)


def _timing_section(ev: dict[str, Any], plots: dict[str, str]) -> list[str]:
    tp = ev["throughput"]
    processed = tp.get("processed_this_run", tp["documents"])
    lines = ["## Throughput", "",
             f"{processed} documents processed by this run in {_num(tp['elapsed_s'], 1)} s: "
             f"{_num(tp['docs_per_s'], 3)} documents/s ({_num(tp['docs_per_min'], 1)} documents/min).", ""]
    if processed != tp["documents"]:
        lines += [f"{tp['documents'] - processed} more documents were recorded by an earlier run "
                  "(resumed): they are not counted in the rate; their times below are from that run.", ""]
    if "timing" in plots:
        lines += [f"![time per document]({plots['timing']})", ""]
    rows = [[t, str(s["n"]), _num(s["mean"], 2), _num(s["median"], 2), _num(s["sd"], 2)]
            for t, s in tp["time_per_document_s"].items()]
    return lines + _table(["predicted type", "n", "mean s", "median s", "SD s"], rows)


def _document_section(ev: dict[str, Any]) -> list[str]:
    worst = sorted(ev["documents"], key=lambda d: d["f1"])[:WORST_SHOWN]
    rows = [[f"`{d['image']}`", d["true_type"], str(d["predicted_type"]), _num(d["f1"])] for d in worst]
    lines = [f"## Lowest-scoring documents (up to {WORST_SHOWN})", ""]
    lines += _table(["image", "true type", "predicted type", "F1"], rows)
    for title, items in (("Documents without ground truth", ev["documents_without_ground_truth"]),
                         ("Ground-truth entries without a result", ev["ground_truth_without_results"]),
                         ("Documents with errors", ev["documents_with_errors"])):
        lines += [f"## {title} ({len(items)})", ""] + ([f"- `{item}`" for item in items] or ["None."]) + [""]
    return lines


# ---------------------------------------------------------------- plots

def _save(fig: Figure, path: Path) -> None:
    """Render to a temp file beside the target, then rename (atomic)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".png")
    with os.fdopen(fd, "wb") as f:
        fig.savefig(f, format="png", dpi=110, bbox_inches="tight")
    os.replace(tmp, path)


def _write_plots(ev: dict[str, Any], records: list[dict[str, Any]], plot_dir: Path) -> dict[str, str]:
    """Plots that have data; returns name -> path relative to the report."""
    written = {}
    if ev["per_field"]:
        _save(_field_plot(ev["per_field"]), plot_dir / "field_f1.png")
        written["field_f1"] = f"{PLOTS_DIR}/field_f1.png"
    if ev["overall"]["documents"]:
        _save(_confusion_plot(ev["confusion_matrix"]), plot_dir / "confusion_matrix.png")
        written["confusion"] = f"{PLOTS_DIR}/confusion_matrix.png"
    times = times_by_type(records)
    if times:
        _save(_timing_plot(times), plot_dir / "time_per_document.png")
        written["timing"] = f"{PLOTS_DIR}/time_per_document.png"
    return written


def _field_plot(per_field: dict[str, dict[str, Any]]) -> Figure:
    heights = [max(1.5, 0.32 * len(fields) + 0.8) for fields in per_field.values()]
    fig = Figure(figsize=(8, sum(heights)))
    axes = fig.subplots(len(per_field), 1, squeeze=False, gridspec_kw={"height_ratios": heights})[:, 0]
    for ax, (doc_type, fields) in zip(axes, per_field.items()):
        names = list(fields)[::-1]  # schema order from the top
        means = [fields[n]["mean"] for n in names]
        labels = [f"{n} (n = {fields[n]['n']})" for n in names]  # partial truth: fields differ in n
        low = [m - fields[n]["ci95"][0] if fields[n]["ci95"] else 0 for n, m in zip(names, means)]
        high = [fields[n]["ci95"][1] - m if fields[n]["ci95"] else 0 for n, m in zip(names, means)]
        ax.barh(labels, means, xerr=[low, high], color="tab:blue", ecolor="black", capsize=2)
        for y, mean in enumerate(means):  # the number too: a zero bar is otherwise invisible
            ax.text(0.01, y, f"{mean:.2f}", va="center", fontsize=7, color="white" if mean > 0.08 else "black")
        ax.set_xlim(0, 1.05)
        ax.set_title(f"{doc_type} ({_count(max(f['n'] for f in fields.values()), 'document')})", fontsize=10)
        ax.tick_params(axis="y", labelsize=8)
    axes[-1].set_xlabel("mean F1 (bars: 95% CI)")
    fig.tight_layout()
    return fig


def _confusion_plot(cm: dict[str, Any]) -> Figure:
    fig = Figure(figsize=(1.6 * len(cm["predicted"]) + 2, 1.0 * len(cm["true"]) + 1.5))
    ax = fig.subplots()
    ax.imshow(cm["matrix"], cmap="Blues")
    ax.set_xticks(range(len(cm["predicted"])), cm["predicted"], rotation=30, ha="right")
    ax.set_yticks(range(len(cm["true"])), cm["true"])
    peak = max(max(row) for row in cm["matrix"]) or 1
    for i, row in enumerate(cm["matrix"]):
        for j, count in enumerate(row):
            ax.text(j, i, str(count), ha="center", va="center", color="white" if count > peak / 2 else "black")
    ax.set_xlabel("predicted type")
    ax.set_ylabel("true type")
    fig.tight_layout()
    return fig


def _timing_plot(times: dict[str, list[float]]) -> Figure:
    fig = Figure(figsize=(1.8 * len(times) + 2, 4))
    ax = fig.subplots()
    ax.boxplot(list(times.values()), showmeans=True)
    ax.set_xticks(range(1, len(times) + 1), [f"{t}\n(n = {len(v)})" for t, v in times.items()])
    ax.set_ylim(bottom=0)
    ax.set_ylabel("seconds per document")
    ax.set_title("Time per document by predicted type")
    fig.tight_layout()
    return fig
