"""The overview's chart, drawn on the server as inline SVG: completed and failed jobs per
minute, stacked, one bar per minute. No script draws it, so it needs nothing from the CSP."""

from dataclasses import dataclass

from fastapi_equeue.insight import ThroughputPoint

WIDTH = 720
HEIGHT = 160
PLOT_TOP = 12
PLOT_BOTTOM = HEIGHT - 20
LEFT = 40


@dataclass(frozen=True, slots=True)
class Bar:
    """One minute's stacked bar: completed below, failed on top (SVG units)."""

    x: float
    width: float
    completed_y: float
    completed_height: float
    failed_y: float
    failed_height: float
    title: str


@dataclass(frozen=True, slots=True)
class Chart:
    """What the template draws."""

    width: int
    height: int
    left: int
    top: int
    bottom: int
    bars: tuple[Bar, ...]
    peak: int
    first: str
    last: str
    completed: int
    failed: int


def throughput_chart(points: list[ThroughputPoint]) -> Chart:
    """The bars of ``points`` (one per minute, oldest first), scaled to the busiest minute."""
    peak = max((p.completed + p.failed for p in points), default=0)
    span = PLOT_BOTTOM - PLOT_TOP
    slot = (WIDTH - LEFT) / max(len(points), 1)
    bars = []
    for i, point in enumerate(points):
        completed = span * point.completed / peak if peak else 0.0
        failed = span * point.failed / peak if peak else 0.0
        bars.append(
            Bar(
                x=round(LEFT + i * slot + 1, 2),
                width=round(max(slot - 2, 1), 2),
                completed_y=round(PLOT_BOTTOM - completed, 2),
                completed_height=round(completed, 2),
                failed_y=round(PLOT_BOTTOM - completed - failed, 2),
                failed_height=round(failed, 2),
                title=(
                    f"{point.minute:%H:%M} UTC: {point.completed} completed, {point.failed} failed"
                ),
            )
        )
    return Chart(
        width=WIDTH,
        height=HEIGHT,
        left=LEFT,
        top=PLOT_TOP,
        bottom=PLOT_BOTTOM,
        bars=tuple(bars),
        peak=peak,
        first=f"{points[0].minute:%H:%M}" if points else "",
        last=f"{points[-1].minute:%H:%M}" if points else "",
        completed=sum(p.completed for p in points),
        failed=sum(p.failed for p in points),
    )
