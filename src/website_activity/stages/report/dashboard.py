"""The dashboard: ``reports/index.html``, one self-contained page that opens from the file system.

No network and no JavaScript: the charts are matplotlib PNGs embedded as ``data:`` URIs (the ROC
curve is the one the training run logged to MLflow, so the page and the run cannot disagree), the
styles are inline, and a Content-Security-Policy forbids scripts and every remote load. The page
is rendered by Jinja2 with autoescaping, so a string from the data (a page URL such as
``<script>…``) shows as text. Matplotlib draws strings with math text off, so a ``$`` in a label
is a dollar sign.

Sections: KPIs (events, users, sessions, conversion rate, quarantine rate, model ROC AUC beside the
true probabilities' AUC), traffic over time (gold), device and browser mix, the funnel, a heatmap
of the visitors' local weekday and hour, the ROC curve and top coefficients of the featured model,
data quality (the expectations and the quarantine by reason), the 5Vs, and links to the Data Docs,
the CSVs and the MLflow run.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from website_activity.adapters.files import write_text

if TYPE_CHECKING:
    from website_activity.stages.report.data import DashboardOptions, ReportData

TEMPLATE = "dashboard.html.j2"
COLORS = {"desktop": "#4c72b0", "mobile": "#dd8452", "tablet": "#55a868"}
MAX_POINTS = 600  # traffic over time: per minute up to this many, then coarser bins


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(draw: Callable[[Any], None], size: tuple[float, float] = (6.4, 3.4)) -> str:
    """Draw on a fresh figure and return it as a ``data:image/png;base64,…`` URI."""
    plt = _pyplot()
    with plt.rc_context({"text.parse_math": False, "font.size": 9}):
        fig, ax = plt.subplots(figsize=size, dpi=100)
        try:
            draw(ax)
            fig.tight_layout()
            buf = io.BytesIO()
            fig.savefig(buf, format="png")
        finally:
            plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _empty(ax: Any, message: str) -> None:
    ax.text(0.5, 0.5, message, ha="center", va="center", color="grey")
    ax.set_axis_off()


def traffic_chart(per_minute: Any) -> str:
    """Events over time per device (gold windows; binned coarser when there are many minutes)."""
    import pandas as pd

    def draw(ax: Any) -> None:
        if per_minute.empty:
            return _empty(ax, "no gold windows (run make ingest)")
        frame = per_minute.assign(window_start=pd.to_datetime(per_minute["window_start"]))
        table = frame.pivot_table(index="window_start", columns="device_type", values="events", aggfunc="sum",
                                  fill_value=0).sort_index()
        span_min = max(1, int((table.index.max() - table.index.min()).total_seconds() // 60) + 1)
        minutes = next((m for m in (1, 5, 15, 60, 240, 1440) if span_min / m <= MAX_POINTS), 1440)
        if minutes > 1:
            table = table.resample(f"{minutes}min").sum()
        for device in table.columns:
            ax.plot(table.index, table[device], label=str(device), color=COLORS.get(device), linewidth=1)
        ax.set(ylabel=f"events per {minutes} min", xlabel="event time (UTC)")
        ax.legend(loc="upper right", fontsize=8)
        ax.figure.autofmt_xdate()
    return _png(draw)


def share_chart(frame: Any, column: str, title: str) -> str:
    def draw(ax: Any) -> None:
        if frame.empty:
            return _empty(ax, "no events")
        labels = [str(v) for v in frame[column]]
        bars = ax.bar(labels, frame["events"], color=[COLORS.get(v, "#8172b3") for v in labels])
        for bar, share in zip(bars, frame["share"]):
            ax.annotate(f"{100 * share:.1f}%", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                        ha="center", va="bottom", fontsize=8)
        ax.set(ylabel="events", title=title)
    return _png(draw, (4.6, 3.2))


def funnel_chart(steps: list[dict[str, Any]]) -> str:
    def draw(ax: Any) -> None:
        if not steps or not steps[0]["sessions"]:
            return _empty(ax, "no sessions")
        labels = [s["stage"].replace("_", " ") for s in steps][::-1]
        values = [s["sessions"] for s in steps][::-1]
        bars = ax.barh(labels, values, color="#4c72b0")
        for bar, s in zip(bars, steps[::-1]):
            ax.annotate(f" {s['sessions']:,} ({100 * s['share_of_sessions']:.1f}%)",
                        (bar.get_width(), bar.get_y() + bar.get_height() / 2), va="center", fontsize=8)
        ax.set(xlabel="sessions", xlim=(0, max(values) * 1.3))
    return _png(draw)


def heatmap_chart(by_hour: Any) -> str:
    import numpy as np

    def draw(ax: Any) -> None:
        if by_hour.empty:
            return _empty(ax, "no events")
        grid = np.zeros((7, 24))
        for r in by_hour.itertuples():
            grid[int(r.local_weekday), int(r.local_hour)] += r.events
        image = ax.imshow(grid, aspect="auto", cmap="viridis")
        ax.set_yticks(range(7), ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"])
        ax.set_xticks(range(0, 24, 3))
        ax.set(xlabel="local hour (the visitor's time zone)")
        ax.figure.colorbar(image, ax=ax, label="events")
    return _png(draw)


def coefficients_chart(coefficients: list[dict[str, Any]], top: int = 12) -> str:
    def draw(ax: Any) -> None:
        if not coefficients:
            return _empty(ax, "no trained model yet (run make train)")
        # Regularisation zeroes some inputs: the chart shows those it kept (all of them when none are).
        kept = [c for c in coefficients if abs(c["coefficient"]) >= 1e-6] or coefficients
        rows = kept[:top][::-1]
        values = [r["coefficient"] for r in rows]
        ax.barh([str(r["feature"]) for r in rows], values,
                color=["#55a868" if v > 0 else "#c44e52" for v in values])
        ax.axvline(0, color="grey", linewidth=0.8)
        ax.set(xlabel="coefficient (standardised input; log-odds)",
               title=f"{min(top, len(kept))} of {len(coefficients)} inputs, largest first")
    return _png(draw, (6.4, 4.0))


def quarantine_chart(by_reason: dict[str, int]) -> str:
    def draw(ax: Any) -> None:
        if not by_reason:
            return _empty(ax, "nothing quarantined")
        items = sorted(by_reason.items(), key=lambda kv: kv[1])
        ax.barh([str(k) for k, _ in items], [v for _, v in items], color="#c44e52")
        ax.set(xlabel="records quarantined")
    return _png(draw, (6.4, max(2.2, 0.3 * len(by_reason) + 1)))


def _image_uri(png: bytes | None) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii") if png else ""


def _fmt(value: Any, kind: str = "int") -> str:
    if value is None or value == "":
        return "n/a"
    if kind == "pct":
        return f"{100 * float(value):.2f}%"
    if kind == "auc":
        return f"{float(value):.3f}"
    if kind == "num":
        v = float(value)
        return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.4g}"
    return f"{int(value):,}"


def render(data: "ReportData", options: "DashboardOptions") -> str:
    """The page's HTML."""
    import jinja2

    env = jinja2.Environment(loader=jinja2.PackageLoader("website_activity", "templates"),
                             autoescape=True, undefined=jinja2.StrictUndefined)
    env.filters["fmt"] = _fmt
    frames = data.frames
    quality = data.quality
    suites: dict[str, dict[str, int]] = {}
    for q in quality:
        s = suites.setdefault(q["suite"], {"passed": 0, "failed": 0})
        s["passed" if q["success"] == "true" else "failed"] += 1
    charts = {
        "traffic": traffic_chart(frames["traffic_per_minute"]),
        "devices": share_chart(frames["traffic_by_device"], "device_type", "device mix"),
        "browsers": share_chart(frames["traffic_by_browser"], "browser", "browser mix"),
        "funnel": funnel_chart(data.funnel),
        "heatmap": heatmap_chart(frames["traffic_by_local_hour"]),
        "coefficients": coefficients_chart(data.model.coefficients),
        "quarantine": quarantine_chart((data.ingest.quarantine_by_reason if data.ingest else None) or {}),
    }
    roc = _image_uri(data.model.images.get("roc_curve.png"))
    top_pages = frames["traffic_by_page"].head(int(options.top_pages)).to_dict("records")
    template = env.get_template(TEMPLATE)
    return template.render(
        k=data.kpis, charts=charts, roc=roc, model=data.model, run=data.model.run or {},
        recent_runs=data.model.runs[-8:][::-1], funnel=data.funnel, five_vs=data.five_vs,
        top_pages=top_pages, suites=suites, failures=[q for q in quality if q["success"] != "true"],
        validation={"status": None, "expectations": None, "rows": None,
                    **(data.validation.to_dict() if data.validation else {})},
        ingest={**dict.fromkeys(("records_read", "silver", "quarantined", "duplicates_removed", "reconciled")),
                **(data.ingest.to_dict() if data.ingest else {})},
        links=data.links,
        generated_at=data.generated_at, profile=options.profile,
        ip_mode=options.ip_mode)


def write_dashboard(data: "ReportData", options: "DashboardOptions", path: Path) -> Path:
    """Render and write ``index.html`` atomically."""
    return write_text(path, render(data, options))
