"""The migration report: a Markdown page and a PNG chart of replication lag over time."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any


def _fmt_seconds(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f} s"


def render_markdown(report: dict[str, Any]) -> str:
    """Render the report dict built by the report task (timeline, validation, cleanup)."""
    lines = [f"# Migration report: {report['migration_id']}", ""]
    lines += [f"- Run: `{report.get('run_id', '')}`",
              f"- Outcome: **{report.get('outcome', 'unknown')}**",
              f"- Initial load: {report.get('initial_load')}; CDC engine: {report.get('cdc_engine')}",
              f"- Databases: {', '.join(report.get('databases', []))}",
              f"- Write-blocked window: **{_fmt_seconds(report.get('write_blocked_seconds'))}**"]
    load = report.get("initial_load_stats")
    if load:
        lines.append(f"- Initial load: {load.get('tables')} tables, {int(load.get('bytes') or 0) / 1e6:.1f} MB in "
                     f"{_fmt_seconds(load.get('load_seconds'))} ({load.get('mb_per_second')} MB/s)")
    proof = report.get("source_quiet_proof")
    if proof:
        lines.append("- Proof that nothing committed after the final LSN is missing: "
                     + ("**passed**" if proof.get("ok") else f"**failed**: {proof.get('error')}"))
    lines.append("")
    timeline = report.get("timeline") or []
    if timeline:
        lines += ["## Cutover timeline", "", "| step | started | seconds | detail |", "|---|---|---|---|"]
        for step in timeline:
            detail = str(f"FAILED: {step['error']}" if step.get("error") else step.get("detail",
                                                                                       "")).replace("|", "\\|")
            lines.append(f"| {step['name']} | {step.get('started_at', '')} | {step.get('seconds', 0):.3f} | {detail} |")
        lines.append("")
    validation = report.get("validation") or []
    if validation:
        lines += ["## Validation", "", "| database | tables | rows compared | mismatched chunks |", "|---|---|---|---|"]
        for row in validation:
            lines.append(f"| {row['database']} | {row.get('tables', 0)} | {row.get('rows', 0)} | "
                         f"{row.get('mismatched_chunks', 0)} |")
        rows = sum(int(r.get("rows", 0)) for r in validation)
        tables = sum(int(r.get("tables", 0)) for r in validation)
        lines += ["", f"Rows validated: {rows} in {tables} tables.", ""]
    if report.get("source_changes"):
        lines += ["## Source changes", ""] + [f"- {item}" for item in report["source_changes"]] + [""]
    cleanup = report.get("cleanup") or []
    lines += ["## Cleanup", ""]
    lines += [f"- {item}" for item in cleanup] or ["- nothing to clean up"]
    if report.get("lag_chart"):
        lines += ["", "## Replication lag", "", f"![lag over time]({Path(report['lag_chart']).name})"]
    return "\n".join(lines) + "\n"


def render_lag_chart(samples: list[dict[str, Any]], path: str | Path) -> Path | None:
    """Lag (bytes) over time per database as a PNG; None when there are no samples."""
    if not samples:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.5), dpi=100)
    for database in sorted({s["database"] for s in samples}):
        points = sorted((s for s in samples if s["database"] == database), key=lambda s: s["sampled_at"])
        times = [s["sampled_at"] if isinstance(s["sampled_at"], datetime) else datetime.fromisoformat(s["sampled_at"])
                 for s in points]
        ax.plot(times, [s["lag_bytes"] for s in points], marker=".", label=database)
    import matplotlib.dates as mdates

    every = [s["sampled_at"] if isinstance(s["sampled_at"], datetime) else datetime.fromisoformat(s["sampled_at"])
             for s in samples]
    if max(every) == min(every):  # one sample: give it a minute of axis instead of matplotlib's years
        ax.set_xlim(min(every) - timedelta(seconds=30), max(every) + timedelta(seconds=30))
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(ax.xaxis.get_major_locator()))
    ax.set_ylim(bottom=0)
    ax.set_ylabel("lag (bytes)")
    ax.set_title("Replication lag")
    ax.legend(loc="upper right")
    fig.autofmt_xdate()
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def write_report(report: dict[str, Any], directory: str | Path, samples: list[dict[str, Any]] | None = None) -> Path:
    """Write report.md (and lag.png when there are samples) into ``directory``; return the Markdown path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    chart = render_lag_chart(samples or [], directory / "lag.png")
    report = {**report, "lag_chart": str(chart) if chart else None}
    out = directory / "report.md"
    out.write_text(render_markdown(report))
    return out
