"""The sweep's answer in three lines (best cell, does pre-training pay off, at what cost), the
comparisons table and the note on how test accuracy's CIs were made, from the ``Evidence``."""

from __future__ import annotations

import math

from transferlab.sweep.evidence import Comparison, Evidence, group
from transferlab.sweep.stats import ALPHA, RESAMPLES, Difference
from transferlab.tables import markdown_table

TIE = 0.01  # a difference whose whole CI lies within ±1 point: more seeds will not split it


def answer(evidence: Evidence | None) -> list[str]:
    """The three lines the report opens with: best cell, pre-training, cost."""
    if evidence is None or not evidence.cells:
        return [
            "- **Answer:** not enough evidence: no run stored its per-image test predictions "
            "(test_predictions.npz; older runs), so the table shows mean ± std over seeds, "
            "without CIs or tests; rerun the sweep to get them."
        ]
    pre = [c for c in evidence.comparisons if c.name.startswith("pre-training")]
    chosen = next((c for c in pre if group(c.a) == group(evidence.best)), pre[0] if pre else None)
    return [best_line(evidence), pretraining_line(pre, chosen), cost_line(evidence, chosen)]


def best_line(evidence: Evidence) -> str:
    """The best cell; 'run more seeds' while a rival's CI still reaches it, unless a tie."""
    best = evidence.best
    head = (
        f"`{best.label}`, test acc {best.acc:.4f} (95% CI {best.low:.4f}–{best.high:.4f}, "
        f"{best.seeds} seed{'s' * (best.seeds > 1)})"
    )
    rivals = [c for c in evidence.comparisons if c.b is best and c.name.endswith("vs best")]
    unsettled = [c for c in rivals if not c.p_holm < ALPHA]  # NaN (one seed) is unsettled
    if best.seeds < 2:
        line = f"not enough evidence: run more seeds. {head}: one seed hides the seed spread."
    elif not unsettled:
        line = head + "."
        if len(rivals) == 1:
            line = f"{head}, ahead of `{rivals[0].a.label}` (Holm {p_is(rivals[0].p_holm)})."
        elif rivals:  # the least clear of them
            worst = p_is(max(c.p_holm for c in rivals)).replace("=", "≤")
            line = f"{head}, ahead of the {len(rivals)} cells compared with it (Holm {worst})."
    elif all(tied(c.result) for c in unsettled):
        names = ", ".join(f"`{c.a.label}`" for c in unsettled)
        line = f"{head}; tied with {names} (CI of the difference within ±{100 * TIE:.0f} point)."
    else:
        close = max(unsettled, key=lambda c: 2.0 if math.isnan(c.p_holm) else c.p_holm)
        line = (
            f"not enough evidence: run more seeds. {head} leads, but `{close.a.label}` is "
            f"{difference_text(close)} from it."
        )
    if evidence.without:
        line += " Not compared (no per-image predictions): " + ", ".join(
            f"`{c}`" for c in evidence.without
        )
    return f"- **Best:** {line}"


def pretraining_line(pre: list[Comparison], chosen: Comparison | None) -> str:
    """Pre-training within the best cell's group, and in how many groups it pays off."""
    if chosen is None:
        return "- **Pre-training:** not compared (no pretrained=true/false pair with evidence)."
    if math.isnan(chosen.p_holm):
        verdict = "not enough evidence: run more seeds."
    elif chosen.p_holm < ALPHA:
        verdict = "pays off:" if chosen.result.diff > 0 else "costs accuracy:"
    elif tied(chosen.result):
        verdict = f"makes no difference (CI within ±{100 * TIE:.0f} point):"
    else:
        verdict = "not enough evidence: run more seeds."
    gains = sum(c.p_holm < ALPHA and c.result.diff > 0 for c in pre)
    tested = sum(not math.isnan(c.p_holm) for c in pre)
    tally = f"; a significant gain in {gains} of {tested} groups" if tested > 1 else ""
    detail = f"{difference_text(chosen)} for `{group(chosen.a, tuned=False)}`{tally}."
    return f"- **Pre-training:** {verdict} {detail}"


def cost_line(evidence: Evidence, chosen: Comparison | None) -> str:
    """Training wall time (mean over seeds): pretrained and scratch, and the best cell."""
    best = f"the best cell trained in {seconds(evidence.best.train_s)}"
    if chosen is None:
        return f"- **Cost:** {best} (training wall time, mean over seeds)."
    return (
        f"- **Cost:** pretrained `{group(chosen.a, tuned=False)}` trained in {seconds(chosen.a.train_s)}, "
        f"from scratch in {seconds(chosen.b.train_s)}; {best} (training wall time, mean over "
        "seeds)."
    )


def tied(result: Difference) -> bool:
    return result.low > -TIE and result.high < TIE


def difference_text(c: Comparison) -> str:
    """'+3.1 points (95% CI +2.2 to +4.0, Holm p = 0.0004)'."""
    r = c.result
    if math.isnan(r.p):
        return f"{points(r.diff)} points (no CI: one seed)"
    ci = f"95% CI {points(r.low)} to {points(r.high)}"
    return f"{points(r.diff)} points ({ci}, Holm {p_is(c.p_holm)})"


def points(x: float) -> str:
    return f"{100 * x:+.1f}"


def p_text(p: float) -> str:
    if math.isnan(p):
        return "n/a"
    return "< 0.0001" if p < 1e-4 else f"{p:.4f}"


def p_is(p: float) -> str:
    """'p < 0.0001' or 'p = 0.0123'."""
    text = p_text(p)
    return f"p {text}" if text.startswith("<") else f"p = {text}"


def seconds(s: float) -> str:
    return "-" if math.isnan(s) else f"{s:.0f} s"


def comparisons_section(evidence: Evidence | None) -> list[str]:
    """The comparisons table and how it was computed."""
    if evidence is None or not evidence.comparisons:
        return []
    header = ["comparison", "a", "b", "a − b (points)", "95% CI (points)", "p", "p (Holm)"]
    rows = []
    for c in evidence.comparisons:
        r = c.result
        ci = "-" if math.isnan(r.low) else f"{points(r.low)} to {points(r.high)}"
        rows.append(
            [c.name, c.a.label, c.b.label, points(r.diff), ci, p_text(r.p), p_text(c.p_holm)]
        )
    return [
        "## Comparisons",
        "",
        f"Paired on the same {evidence.images:,} test images. p: a paired t-test whose variance "
        "adds each cell's seed-to-seed spread to the spread of the per-image differences "
        "(Welch–Satterthwaite degrees of freedom), Holm-adjusted over the "
        f"{sum(not math.isnan(c.result.p) for c in evidence.comparisons)} comparisons shown. "
        "n/a: a cell with one seed, whose seed spread is unknown.",
        "",
        markdown_table(header, rows),
        "",
    ]


def table_note(evidence: Evidence | None) -> str:
    """What the table's accuracy column shows."""
    if evidence is None or not evidence.cells:
        return "Metrics on the test split: mean ± std over seeds (sample std; one run: no ±)."
    note = (
        f"Test acc: mean over seeds and the {evidence.images:,} test images every run saw, with a "
        f"95% CI from a hierarchical bootstrap ({RESAMPLES} resamples of the seeds, then of the "
        "test images; with one seed it covers the images only). Other metrics: mean ± std over "
        "seeds (sample std; one run: no ±)."
    )
    if evidence.without:
        cells = ", ".join(f"`{c}`" for c in evidence.without)
        note += f" No per-image predictions (older runs), so mean ± std only: {cells}."
    return note
