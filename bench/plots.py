"""bench/fanout.png and bench/timeline.png."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, MultipleLocator

from bench.fanout import LAMBDA_LIMIT_S
from bench.timeline import CONSUMERS, Day, TokenLife, token_lives
from bench.world import WECHAT_LATENCY

WECHAT_TZ = timezone(timedelta(hours=8))
# tab10 without its grey, which marks tokens someone else fetched
_TAB10: Any = plt.get_cmap("tab10")
PALETTE = [c for i, c in enumerate(_TAB10.colors) if i != 7]
FOREIGN = "#9e9e9e"


def fanout(runs: list[dict[str, Any]], path: Path) -> None:
    fig, (ax_time, ax_app, ax_mem) = plt.subplots(1, 3, figsize=(16, 5.2))
    styles = {16: ("tab:blue", "o"), 64: ("tab:orange", "s")}
    for concurrency, (color, marker) in styles.items():
        for phase, dash in (("hourly", "-"), ("fill", "--")):
            points = sorted(
                (r["n"], r["wall_s"], r["rss_peak"])
                for r in runs
                if r["concurrency"] == concurrency and r["phase"] == phase
            )
            if not points:
                continue
            ns = [p[0] for p in points]
            what = "hourly (probe + fetch)" if phase == "hourly" else "first fill (fetch)"
            label = f"concurrency {concurrency}, {what}"
            ax_time.plot(ns, [p[1] for p in points], dash, color=color, marker=marker, label=label)
            ax_app.plot(
                ns,
                [p[1] / p[0] * 1000 for p in points],
                dash,
                color=color,
                marker=marker,
                label=label,
            )
            if phase == "hourly":
                ax_mem.plot(
                    ns,
                    [p[2] / 2**20 for p in points],
                    "-",
                    color=color,
                    marker=marker,
                    label=f"concurrency {concurrency}: peak RSS",
                )
                ideal = [-(-n // min(concurrency, n)) * 2 * WECHAT_LATENCY for n in ns]
                ax_time.plot(
                    ns,
                    ideal,
                    ":",
                    color=color,
                    alpha=0.7,
                    label=f"ideal at {concurrency} (WeChat latency only)",
                )
    baseline = [r["rss_baseline"] / 2**20 for r in runs]
    if baseline:
        ax_mem.axhline(
            min(baseline), color="grey", ls=":", label="RSS before the run (imports, wiring)"
        )
    ax_time.axhline(LAMBDA_LIMIT_S, color="tab:red", ls="--", lw=1.2)
    ax_time.text(1.1, LAMBDA_LIMIT_S * 1.15, "Lambda timeout: 15 min", color="tab:red", fontsize=9)
    ax_time.set(
        xscale="log",
        yscale="log",
        xlabel="apps refreshed in one invocation",
        ylabel="wall time (s)",
    )
    ax_time.set_ylim(0.02, 3000)
    ax_time.set_title("Wall time of one refresher run")
    ax_app.set(xscale="log", xlabel="apps", ylabel="wall time per app (ms)")
    ax_app.set_title("Cost per app falls as the fan-out fills")
    ax_app.set_ylim(bottom=0)
    ax_mem.set(xscale="log", xlabel="apps", ylabel="MiB")
    ax_mem.set_title("Refresher process memory (hourly run)")
    ax_mem.set_ylim(0, max(r["rss_peak"] for r in runs) / 2**20 * 1.25)
    for ax in (ax_time, ax_app, ax_mem):
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=7.5, loc="lower right" if ax is not ax_app else "upper right")
    fig.suptitle(
        f"Refresh fan-out: simulator over loopback HTTP with {WECHAT_LATENCY * 1000:.0f} ms per "
        "WeChat request, DynamoDB Local; 2-core machine",
        fontsize=11,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --- timeline ---------------------------------------------------------------------------------

TOKEN_ROWS = (5.9, 5.45)
FOREIGN_Y = 4.95
REFRESH_Y = 4.1
CONSUMER_Y = {name: 3.0 - i for i, name in enumerate(CONSUMERS)}


def _clock_label(day: Day) -> FuncFormatter:
    def fmt(value: float, _pos: int) -> str:
        return (
            datetime.fromtimestamp(day.start + value, UTC).astimezone(WECHAT_TZ).strftime("%H:%M")
        )

    return FuncFormatter(fmt)


def _colors(lives: list[TokenLife]) -> dict[str, Any]:
    colors: dict[str, Any] = {}
    ours = 0
    for life in lives:
        if life.foreign:
            colors[life.fp] = FOREIGN
        else:
            colors[life.fp] = PALETTE[ours % len(PALETTE)]
            ours += 1
    return colors


def _draw(
    ax: Axes, day: Day, lives: list[TokenLife], colors: dict[str, Any], *, zoom: bool
) -> None:
    t0 = day.start
    height = 0.38
    ours = [life for life in lives if not life.foreign]
    for life in lives:
        y = FOREIGN_Y if life.foreign else TOKEN_ROWS[ours.index(life) % 2]
        color = colors[life.fp]
        end_current = life.retired if life.retired is not None else life.accepted_until
        ax.broken_barh(
            [(life.issued - t0, end_current - life.issued)],
            (y - height / 2, height),
            color=color,
            alpha=0.9,
        )
        if life.retired is not None and life.accepted_until > life.retired:
            ax.broken_barh(
                [(life.retired - t0, life.accepted_until - life.retired)],
                (y - height / 2, height),
                facecolor=color,
                alpha=0.3,
                hatch="////",
                edgecolor=color,
            )
        if life.foreign:
            marker, size = "X", 70
        elif life.passive:
            marker, size = "*", 150
        else:
            marker, size = "v", 60
        ax.scatter(
            [life.issued - t0],
            [REFRESH_Y],
            marker=marker,
            s=size,
            color=color,
            edgecolor="black",
            linewidth=0.6,
            zorder=5,
        )
    for t, _kind, outcome in day.refresher_runs:
        if outcome != "refreshed":
            ax.scatter([t - t0], [REFRESH_Y - 0.35], marker="o", s=12, color="grey", zorder=4)
    for name, uses in day.uses.items():
        y = CONSUMER_Y[name]
        segments: list[tuple[float, float, str]] = []
        for t, fp in uses:
            if segments and segments[-1][2] == fp:
                segments[-1] = (segments[-1][0], t, fp)
            else:
                segments.append((t, t, fp))
        for i, (start, end, fp) in enumerate(segments):
            stop = segments[i + 1][0] if i + 1 < len(segments) else end
            ax.plot(
                [start - t0, stop - t0],
                [y, y],
                color=colors.get(fp, "black"),
                lw=7 if zoom else 6,
                solid_capstyle="butt",
            )
            if i:
                ax.plot([start - t0] * 2, [y - 0.3, y + 0.3], color="black", lw=1.2)
        if zoom:
            ax.scatter([t - t0 for t, _ in uses], [y] * len(uses), s=6, color="black", zorder=5)
        rejected = day.rejections[name]
        if rejected:
            ax.scatter(
                [t - t0 for t in rejected],
                [y + 0.32] * len(rejected),
                marker="x",
                s=45,
                color="red",
                linewidth=2,
                zorder=6,
            )
    ax.set_yticks(
        [sum(TOKEN_ROWS) / 2, FOREIGN_Y, REFRESH_Y, *CONSUMER_Y.values()],
        ["our tokens", "foreign tokens", "refresh events", *CONSUMER_Y.keys()],
    )
    ax.set_ylim(0.4, 6.3)
    ax.xaxis.set_major_formatter(_clock_label(day))
    ax.grid(True, axis="x", alpha=0.3)


def timeline(day: Day, path: Path) -> None:
    lives = token_lives(day)
    colors = _colors(lives)
    fig = plt.figure(figsize=(16, 10))
    grid = fig.add_gridspec(2, 2, height_ratios=[1, 1], hspace=0.3, wspace=0.16)
    top = fig.add_subplot(grid[0, :])
    _draw(top, day, lives, colors, zoom=False)
    span = day.end - day.start
    top.set_xlim(-600, span + 600)
    top.xaxis.set_major_locator(MultipleLocator(3600 * (2 if span > 8 * 3600 else 1)))
    top.set_title(
        f"A simulated {span / 3600:.0f} h (WeChat time, UTC+8): hourly refreshes, "
        "three consumers with a 60 s cache, and an incident (two foreign fetches evict our token)",
        fontsize=11,
    )
    scheduled = sorted(life.issued for life in lives if not life.foreign and not life.passive)
    rotation = scheduled[3] if len(scheduled) > 3 else scheduled[-1]
    windows = [
        (
            "A scheduled rotation: each consumer switches when its 60 s cache entry ends,\n"
            "well inside the old token's 5 min grace",
            rotation - 60,
        )
    ]
    if day.incident == day.incident:  # not NaN
        windows.append(
            (
                "The incident: a foreign fetch starts our token's grace, a second evicts it;\n"
                "the next call gets 40001 → one passive refresh → the others follow",
                day.incident - 60,
            )
        )
    for column, (title, start) in enumerate(windows):
        ax = fig.add_subplot(grid[1, column])
        _draw(ax, day, lives, colors, zoom=True)
        ax.set_xlim(start - day.start, start - day.start + 7 * 60)
        ax.xaxis.set_major_locator(MultipleLocator(60))
        ax.set_title(title, fontsize=10)
        top.axvspan(
            start - day.start, start - day.start + 7 * 60, color="gold", alpha=0.35, zorder=0
        )
    handles = [
        Patch(facecolor=PALETTE[0], label="token, current (colour = which token)"),
        Patch(
            facecolor=PALETTE[0],
            alpha=0.3,
            hatch="////",
            edgecolor=PALETTE[0],
            label="replaced, still accepted (5 min grace, judged by servers ±90 s apart; "
            "cut short if evicted)",
        ),
        Patch(facecolor=FOREIGN, label="token fetched by someone else"),
        Line2D([], [], marker="v", ls="", color="black", label="scheduled refresh (new token)"),
        Line2D(
            [],
            [],
            marker="*",
            ls="",
            color="black",
            markersize=11,
            label="passive refresh (after 40001)",
        ),
        Line2D(
            [], [], marker="X", ls="", color=FOREIGN, markeredgecolor="black", label="foreign fetch"
        ),
        Line2D(
            [],
            [],
            marker="o",
            ls="",
            color="grey",
            markersize=4,
            label="refresher run, nothing to do",
        ),
        Line2D([], [], color="black", lw=1.2, label="consumer switches token"),
        Line2D(
            [], [], marker="x", ls="", color="red", markeredgewidth=2, label="consumer got 40001"
        ),
        Patch(facecolor="gold", alpha=0.25, label="zoomed below"),
    ]
    fig.legend(handles=handles, loc="lower center", ncol=4, fontsize=9, frameon=False)
    fig.subplots_adjust(bottom=0.13, top=0.95, left=0.08, right=0.985)
    fig.savefig(path, dpi=100)
    plt.close(fig)
