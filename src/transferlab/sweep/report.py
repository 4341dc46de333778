"""Compare a sweep's runs from their folders alone: report.md, PNG plots and a terminal table.

report.md opens with the answer (best cell, does pre-training pay off, at what cost) and its
uncertainty, from the runs' per-image test predictions (sweep/verdict.py).

    python -m transferlab.sweep.report multirun/<date>/<time>

``WriteReport`` (a Hydra callback in conf/hydra/default.yaml) does the same when a sweep ends.
"""

from __future__ import annotations

import argparse
import logging
import sys
from functools import partial
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig
from rich.console import Console

from transferlab.results import read_json
from transferlab.sweep.curves import plot_data_efficiency, plot_learning_curves
from transferlab.sweep.evidence import Evidence, gather
from transferlab.sweep.learning_curve import Arm, measured_arms
from transferlab.sweep.learning_curve_report import learning_curve_section, write_raw_numbers
from transferlab.sweep.runs import Sweep, load_sweep
from transferlab.sweep.summary import print_table, summarize, to_markdown
from transferlab.sweep.verdict import answer, comparisons_section, table_note
from transferlab.tables import markdown_table

log = logging.getLogger(__name__)

REPORT_FILE = "report.md"


def write_report(sweep_dir: Path, console: Console | None = None) -> Path:
    """Write report.md and the plots into ``sweep_dir``, print the table; return the report path."""
    sweep = load_sweep(Path(sweep_dir))
    evidence = gather(sweep)
    table = summarize(sweep, evidence)
    arms = measured_arms(sweep.ok, sweep.cells)
    plots = {}
    for title, plot, name in (
        ("Learning curves", plot_learning_curves, "learning_curves.png"),
        ("Data efficiency", partial(plot_data_efficiency, arms=arms), "data_efficiency.png"),
    ):
        (sweep.folder / name).unlink(missing_ok=True)  # no stale plot from an earlier report
        plots[title] = plot(sweep, sweep.folder / name)
    write_raw_numbers(sweep, arms)
    path = sweep.folder / REPORT_FILE
    path.write_text(render_markdown(sweep, to_markdown(table), plots, evidence, arms))
    print_table(table, title=f"{sweep.folder} ({len(sweep.runs)} jobs)", console=console)
    for line in answer(evidence):
        (console or Console()).print(line.removeprefix("- ").replace("**", ""), markup=False)
    failed = sweep.runs[sweep.runs["status"] != "ok"]
    for _, job in failed.iterrows():
        (console or Console()).print(f"[red]job {job['job']} {job['status']}[/]: {job['error']}")
    return path


def render_markdown(
    sweep: Sweep,
    table: str,
    plots: dict[str, Path | None],
    evidence: Evidence | None = None,
    arms: list[Arm] = (),
) -> str:
    ok = len(sweep.ok)
    lines = [
        f"# Sweep report: `{sweep.folder.name}`",
        "",
        *answer(evidence),
        "",
        f"{len(sweep.runs)} jobs, {ok} ok, {len(sweep.runs) - ok} failed or unfinished. "
        f"Swept: {', '.join(f'`{k}`' for k in sweep.swept) or 'nothing'}. "
        f"{table_note(evidence)} "
        "Train s is the training wall time without validation; images/s the training throughput.",
        "",
        table,
        "",
        *comparisons_section(evidence),
    ]
    for title, plot in plots.items():
        if plot is not None:
            lines += [f"## {title}", "", f"![{title}]({plot.name})", ""]
    lines += learning_curve_section(arms)
    lines += ranking_section(sweep.folder) + failed_section(sweep)
    return "\n".join(lines).rstrip() + "\n"


def ranking_section(folder: Path) -> list[str]:
    """How well each score of `rank.py ... sweep=<this folder>` predicted these runs' ranking."""
    path = folder / "ranking.json"
    taus = read_json(path).get("sweep", {}).get("kendall_tau") if path.is_file() else None
    if not taus:
        return []
    scores = [k for k in taus if k != "backbones"]
    row = [taus[k] if taus[k] is not None else "-" for k in scores]
    return [
        "## Scores before training",
        "",
        f"Kendall tau of each `rank.py` score against these runs' test accuracy "
        f"({len(taus['backbones'])} backbones: {', '.join(taus['backbones'])}); 1 is the same order.",
        "",
        markdown_table(scores, [row]),
        "",
    ]


def failed_section(sweep: Sweep) -> list[str]:
    failed = sweep.runs[sweep.runs["status"] != "ok"]
    if failed.empty:
        return []
    header = ["job", *sweep.swept, "status", "error", "logs"]
    rows = [
        [
            job["job"],
            *(job[k] for k in sweep.swept),
            job["status"],
            str(job["error"])[:400],
            " ".join(f"[{name}]({path})" for name, path in job["logs"].items()),
        ]
        for _, job in failed.iterrows()
    ]
    return ["## Failed jobs", "", markdown_table(header, rows), ""]


class WriteReport(Callback):
    """Writes the report into the sweep folder when a multirun ends, and warns about failed jobs."""

    def on_multirun_end(self, config: DictConfig, **kwargs: object) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        try:
            path = write_report(sweep_dir)
        except Exception as err:  # a report problem must not turn a finished sweep into a failure
            log.warning("no sweep report for %s: %s: %s", sweep_dir, type(err).__name__, err)
            return
        failed = load_sweep(sweep_dir).runs.query("status != 'ok'")
        if len(failed):
            log.warning("%d job(s) failed or did not finish: see %s", len(failed), path)
        log.info("sweep report: %s", path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "sweep_dir", type=Path, help="a multirun folder, e.g. multirun/<date>/<time>"
    )
    args = parser.parse_args(argv)
    try:
        path = write_report(args.sweep_dir)
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"report written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
