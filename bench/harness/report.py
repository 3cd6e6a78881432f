"""Turns the orchestrator's raw results into docs/benchmarks.md and docs/img/bench_*.png.

Every figure is the median of the runs that succeeded; a contender that failed or was not run
shows why instead of a number. Ratios are always "tickloop's advantage": peer/tickloop for
lower-is-better figures (CPU, latency, memory), tickloop/peer for higher-is-better ones, so a
ratio above 1 means tickloop is ahead and below 1 means it is behind.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from rich.table import Table

BASE = "tickloop"
MiB = 2**20
#: A median latency above this means the consumer cannot keep up with the rate: its latency is
#: then queueing that grows with the length of the run, not a property of the client.
FALLS_BEHIND_US = 100_000.0


def _median(values: Iterable[float]) -> float | None:
    vals = [v for v in values if v is not None and not math.isnan(v)]
    return statistics.median(vals) if vals else None


class Figure:
    """One row of the summary: a value per contender key, and which direction is better."""

    def __init__(self, name: str, unit: str, higher_better: bool, fmt: Callable[[float], str]):
        self.name = name
        self.unit = unit
        self.higher_better = higher_better
        self.fmt = fmt
        self.values: dict[str, float | None] = {}
        self.errors: dict[str, str] = {}
        self.runs: dict[str, int] = {}
        self.flags: set[str] = set()  # † : cannot keep up at this rate

    def ratio(self, key: str) -> float | None:
        """tickloop's advantage over ``key`` (> 1: tickloop ahead)."""
        base, other = self.values.get(BASE), self.values.get(key)
        if base is None or other is None or base <= 0 or other <= 0:
            return None
        return base / other if self.higher_better else other / base

    def cell(self, key: str) -> str:
        value = self.values.get(key)
        if value is None:
            return "failed" if key in self.errors else "—"
        text = self.fmt(value)
        if key in self.flags:
            text += " †"
        if key != BASE:
            r = self.ratio(key)
            if r is not None:
                text += f" ({r:.2f}×)"
        return text


def _rate(v: float) -> str:
    return f"{v / 1e3:,.0f}k" if v >= 1e3 else f"{v:,.0f}"


def _us(v: float) -> str:
    return f"{v:,.2f}" if v < 10 else f"{v:,.1f}" if v < 100 else f"{v:,.0f}"


def _mib(v: float) -> str:
    return f"{v:,.1f}"


def _run(result: dict[str, Any]) -> int:
    return int(result.get("run", 0))


def _first_error(runs: list[dict[str, Any]]) -> str:
    for r in runs:
        if not r.get("ok"):
            return str(r.get("error") or "failed")
    return ""


def aggregate(data: dict[str, Any]) -> tuple[list[Figure], dict[str, Any]]:
    """Summary figures (one row each) and the per-phase detail the page also shows."""
    figures: list[Figure] = []
    detail: dict[str, Any] = {}
    by: dict[tuple[str, Any], list[dict[str, Any]]] = defaultdict(list)
    for r in data.get("throughput", []):
        by[(r["key"], r.get("kind"))].append(r)
    tp: dict[tuple[str, str], dict[str, Any]] = {}
    for (key, kind), runs in by.items():
        ok = [r for r in runs if r.get("ok") and r.get("elapsed")]
        tp[(key, kind)] = {
            "runs": len(runs),
            "ok": len(ok),
            "msgs": _median(r["delivered"] / r["elapsed"] for r in ok),
            "frames": _median(r["frames"] / r["elapsed"] for r in ok),
            "cpu_us": _median(r["cpu"] / max(1, r["frames"]) * 1e6 for r in ok),
            "rss": _median(r["peak_rss"] / MiB for r in ok),
            "error": _first_error(runs),
            "all": [round(r["delivered"] / r["elapsed"]) for r in ok],
        }
    detail["throughput"] = tp
    # throughput rows
    for kind, label in (("trades", "trades"), ("depth", "depth diffs")):
        for metric, name, unit, higher, fmt in (
            ("msgs", f"{label}: messages/s reaching user code, one core", "msgs/s", True, _rate),
            ("cpu_us", f"{label}: CPU time per message", "µs", False, _us),
            ("rss", f"{label}: peak RSS", "MiB", False, _mib),
        ):
            fig = Figure(name, unit, higher, fmt)
            for (key, k), agg in tp.items():
                if k != kind:
                    continue
                fig.values[key] = agg[metric]
                fig.runs[key] = agg["ok"]
                if agg["error"] and agg[metric] is None:
                    fig.errors[key] = agg["error"]
            figures.append(fig)
    # latency rows
    lat_by: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    for r in data.get("latency", []):
        lat_by[(r["key"], r["rate"])].append(r)
    lat: dict[tuple[str, int], dict[str, Any]] = {}
    for (key, rate), runs in lat_by.items():
        ok = [r for r in runs if r.get("ok") and "latency_us" in r]
        lat[(key, rate)] = {
            q: _median(r["latency_us"][q] for r in ok) for q in ("p50", "p99", "p99.9", "max")
        }
        lat[(key, rate)].update(runs=len(runs), ok=len(ok), error=_first_error(runs))
        lat[(key, rate)]["delivered_ratio"] = _median(
            r["delivered"] / max(1, r["frames"]) for r in ok
        )
        lat[(key, rate)]["each"] = [
            (r["latency_us"]["p50"], r["latency_us"]["p99"]) for r in sorted(ok, key=_run)
        ]
    detail["latency"] = lat
    for rate in sorted({rate for _, rate in lat}):
        for q in ("p50", "p99", "p99.9"):
            fig = Figure(
                f"latency at {rate // 1000}k msgs/s: {q} send → user code", "µs", False, _us
            )
            for (key, rt), agg in lat.items():
                if rt != rate:
                    continue
                fig.values[key] = agg[q]
                fig.runs[key] = agg["ok"]
                if (agg["p50"] or 0) > FALLS_BEHIND_US:
                    fig.flags.add(key)
                if agg["error"] and agg[q] is None:
                    fig.errors[key] = agg["error"]
            figures.append(fig)
    # soak rows
    soak = {r["key"]: r for r in data.get("soak", [])}
    detail["soak"] = soak
    if soak:
        fig = Figure("soak: RSS drift after warm-up", "MiB", False, lambda v: f"{v:+.1f}")
        for key, r in soak.items():
            if r.get("ok") and "drift_mib" in r:
                fig.values[key] = r["drift_mib"]
            else:
                fig.errors[key] = str(r.get("error") or "no RSS samples")
        figures.append(fig)
    return figures, detail


def summary_table(data: dict[str, Any]) -> Table:
    figures, _ = aggregate(data)
    keys = [c["key"] for c in data.get("contenders", [])]
    labels = {c["key"]: c["label"] for c in data.get("contenders", [])}
    table = Table(title="tickloop vs peers (median; ratio = tickloop's advantage, >1 ahead)")
    table.add_column("figure")
    for key in keys:
        table.add_column(labels[key], justify="right")
    for fig in figures:
        table.add_row(f"{fig.name} ({fig.unit})", *[fig.cell(k) for k in keys])
    return table


# ----------------------------------------------------------------------------- plots


def _plots(
    data: dict[str, Any], figures: list[Figure], detail: dict[str, Any], img: Path
) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    img.mkdir(parents=True, exist_ok=True)
    keys = [c["key"] for c in data.get("contenders", [])]
    labels = {c["key"]: c["label"] for c in data.get("contenders", [])}
    colors = {
        "tickloop": "#1f77b4",
        "tickloop-iter": "#6baed6",
        "tickloop-raw": "#17becf",
        "tickloop-raw-iter": "#9edae5",
        "naive": "#7f7f7f",
        "cryptofeed": "#2ca02c",
        "ccxt": "#d62728",
    }
    written = []

    tp = detail.get("throughput", {})
    if tp:
        fig, axes = plt.subplots(1, 2, figsize=(11, 4))
        for ax, metric, title in (
            (axes[0], "msgs", "messages/s reaching user code (one core)"),
            (axes[1], "cpu_us", "CPU µs per message (lower is better)"),
        ):
            kinds = ("trades", "depth")
            width = 0.8 / max(1, len(keys))
            for i, key in enumerate(keys):
                vals = [(tp.get((key, k)) or {}).get(metric) or 0 for k in kinds]
                xs = [j + i * width for j in range(len(kinds))]
                ax.bar(xs, vals, width, label=labels[key], color=colors.get(key))
            ax.set_xticks([j + 0.4 - width / 2 for j in range(len(kinds))])
            ax.set_xticklabels(["trades", "depth diffs"])
            ax.set_title(title, fontsize=10)
        axes[0].legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(img / "bench_throughput.png", dpi=110)
        plt.close(fig)
        written.append("bench_throughput.png")

    lat = detail.get("latency", {})
    rates = sorted({rate for _, rate in lat})
    if rates:
        fig, axes = plt.subplots(1, len(rates), figsize=(5.5 * len(rates), 4), squeeze=False)
        qs = ("p50", "p99", "p99.9")
        for ax, rate in zip(axes[0], rates, strict=True):
            width = 0.8 / max(1, len(keys))
            for i, key in enumerate(keys):
                agg = lat.get((key, rate)) or {}
                vals = [agg.get(q) or 0 for q in qs]
                ax.bar(
                    [j + i * width for j in range(3)],
                    vals,
                    width,
                    label=labels[key],
                    color=colors.get(key),
                )
            ax.set_yscale("log")
            ax.set_xticks([j + 0.4 - width / 2 for j in range(3)])
            ax.set_xticklabels(qs)
            ax.set_ylabel("µs, send → user code (log)")
            ax.set_title(f"latency at {rate // 1000}k msgs/s", fontsize=10)
        axes[0][0].legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(img / "bench_latency.png", dpi=110)
        plt.close(fig)
        written.append("bench_latency.png")

    soak = detail.get("soak", {})
    if soak:
        fig, ax = plt.subplots(figsize=(8, 4))
        for key in keys:
            r = soak.get(key)
            if not r or not r.get("rss"):
                continue
            ts = [s[0] / 60 for s in r["rss"]]
            ax.plot(ts, [s[1] / MiB for s in r["rss"]], label=labels[key], color=colors.get(key))
        ax.set_xlabel("minutes")
        ax.set_ylabel("RSS (MiB)")
        ax.set_title("RSS during the soak (paced trades)", fontsize=10)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(img / "bench_soak.png", dpi=110)
        plt.close(fig)
        written.append("bench_soak.png")

    book = data.get("book") or {}
    if book.get("ok"):
        med = book["median"]
        names = list(book["names"].items())
        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        for ax, metric, title in (
            (axes[0], "apply", "book updates/s (log)"),
            (axes[1], "apply_best", "updates/s with best bid/ask read each (log)"),
        ):
            ax.bar(
                [n for n, _ in names],
                [med[full][metric] for _, full in names],
                color=["#1f77b4", "#aec7e8", "#9467bd", "#2ca02c"][-len(names) :],
            )
            ax.set_yscale("log")
            ax.set_title(title, fontsize=10)
            ax.tick_params(axis="x", labelsize=7)
        fig.tight_layout()
        fig.savefig(img / "bench_book.png", dpi=110)
        plt.close(fig)
        written.append("bench_book.png")
    return written


# ----------------------------------------------------------------------------- page


def render(data: dict[str, Any], page: Path, img: Path, notes: str = "") -> None:
    figures, detail = aggregate(data)
    written = _plots(data, figures, detail, img)
    keys = [c["key"] for c in data.get("contenders", [])]
    labels = {c["key"]: c["label"] for c in data.get("contenders", [])}
    plan = data.get("plan", {})
    m = data.get("machine", {})
    lines: list[str] = []
    add = lines.append
    add("# Benchmarks: tickloop side by side with the alternatives")
    add("")
    add(
        "Generated by the harness in `bench/harness/` (see `bench/README.md`); do not edit by "
        "hand, re-run the command."
    )
    add("")
    add(f"* **Command:** `{data.get('command')}` (wall time {data.get('wall_seconds')} s)")
    mode = (
        "quick (one run per figure; medians only where runs > 1)" if plan.get("quick") else "full"
    )
    add(f"* **Mode:** {mode}; {plan.get('runs')} run(s) per figure, contenders alternated")
    add(
        f"* **Machine:** {m.get('cpu')}, {m.get('cores')} cores, {m.get('platform')}, "
        f"Python {m.get('python')}; load average {m.get('load_at_start')} at start, "
        f"{m.get('load_at_end', '?')} at the end (other jobs share the machine); server pinned "
        f"to CPU {m.get('server_cpu')}, each contender to CPU {m.get('client_cpu')}"
    )
    versions: dict[str, str] = {}
    for phase in ("throughput", "latency", "soak"):
        for r in data.get(phase, []):
            versions.update(r.get("versions") or {})
    if versions:
        add("* **Versions:** " + ", ".join(f"{k} {v}" for k, v in sorted(versions.items())))
    add(f"* **Date:** {data.get('date')}")
    add("")
    add(
        "The machine is a shared 2-core VM: absolute figures move ±30–50% between runs, so read "
        "the **ratios** (all contenders measured in the same run, alternated). Treat differences "
        "under ~25% as noise."
    )
    add("")
    add("## Summary")
    add("")
    add(
        "Each cell is the median; in parentheses **tickloop's advantage** over that contender "
        "(peer ÷ tickloop for time and memory, tickloop ÷ peer for rates): above 1× tickloop is "
        "ahead, below 1× it is behind. The reference is `tickloop (callback)`."
    )
    add("")
    add(
        "† : the contender cannot keep up with this rate, so its latency is a queue that grows "
        "with the length of the run. *failed*: see *Runs that failed* below."
    )
    add("")
    add("| figure | " + " | ".join(labels[k] for k in keys) + " |")
    add("|---|" + "---:|" * len(keys))
    for fig in figures:
        add(f"| {fig.name} ({fig.unit}) | " + " | ".join(fig.cell(k) for k in keys) + " |")
    lines.extend(raw_depth_lines(detail.get("throughput", {}), keys, labels))
    book = data.get("book")
    if book is not None:
        add("")
        add("### Local L2 book (bench/bench_book.py's workload)")
        add("")
        if book.get("ok"):
            med = book["median"]
            names = book["names"]
            t = med[names["tickloop"]]
            add(
                f"{book['updates']:,} single-level updates on ~{book['levels']:,} levels a side, "
                f"20% deletes, median of {book['repeat']}. Ratio = tickloop's advantage. "
                + (
                    "tickloop's OrderBook is the install's mypyc-compiled copy; the pure-Python "
                    "class it falls back to without a C compiler is shown too."
                    if book.get("native")
                    else "tickloop's OrderBook ran as pure Python (no compiled copy)."
                )
                + (
                    " Measured on the server's core while the soak ran (its server sleeps "
                    "between 1 ms ticks, the contenders are on the other core)."
                    if book.get("during_soak")
                    else ""
                )
            )
            add("")
            add(
                "| structure | apply (updates/s) | apply + best bid/ask read (updates/s) | "
                "top-10 read, unchanged book (µs) | apply + top-10 read (µs/update) |"
            )
            add("|---|---:|---:|---:|---:|")
            for short, full in names.items():
                v = med[full]

                def rr(
                    metric: str, higher: bool, v: dict[str, float] = v, short: str = short
                ) -> str:
                    if short == "tickloop":
                        return ""
                    r = t[metric] / v[metric] if higher else v[metric] / t[metric]
                    return f" ({r:.2f}×)"

                add(
                    f"| {full} | {v['apply'] / 1e6:.2f}M{rr('apply', True)} | "
                    f"{v['apply_best'] / 1e6:.3f}M{rr('apply_best', True)} | "
                    f"{v['top10_us']:.2f}{rr('top10_us', False)} | "
                    f"{v['apply_top10_us']:.2f}{rr('apply_top10_us', False)} |"
                )
        else:
            add(f"Not measured: {book.get('error')}")
    add("")
    add("### Event bus")
    add("")
    add(
        "Not measured: tickloop's bus (`src/tickloop/bus/`) has not landed yet, so there is no "
        "bus events/s figure and no ratio."
    )
    add("")
    for name in written:
        add(f"![{name}](img/{name})")
        add("")
    add("## Details")
    add("")
    tp = detail.get("throughput", {})
    if tp:
        add("### Throughput (as fast as the consumer reads)")
        add("")
        add(
            f"{plan.get('trades'):,} trade frames / {plan.get('depth'):,} depth diffs measured "
            f"after {plan.get('warmup'):,} warm-up frames. *Delivered* counts what reached user "
            "code; *frames* what the client processed (they differ only for ccxt.pro, which "
            "coalesces). CPU is user + system time of the contender process over the window, "
            "per frame processed."
        )
        add("")
        add(
            "| contender | stream | delivered msgs/s | frames/s | CPU µs/frame | peak RSS MiB | "
            "runs ok | each run (msgs/s) |"
        )
        add("|---|---|---:|---:|---:|---:|---:|---|")
        for key in keys:
            for kind in ("trades", "depth"):
                a = tp.get((key, kind))
                if a is None:
                    continue
                if a["msgs"] is None:
                    add(
                        f"| {labels[key]} | {kind} | failed | | | | 0/{a['runs']} | "
                        f"{_escape(a['error'])} |"
                    )
                    continue
                add(
                    f"| {labels[key]} | {kind} | {_rate(a['msgs'])} | {_rate(a['frames'])} | "
                    f"{_us(a['cpu_us'])} | {_mib(a['rss'])} | {a['ok']}/{a['runs']} | "
                    f"{', '.join(_rate(x) for x in a['all'])} |"
                )
        add("")
    lat = detail.get("latency", {})
    if lat:
        add("### Latency (paced trades)")
        add("")
        add(
            "Server's monotonic clock just before the write of each frame → contender's monotonic "
            "clock when user code receives the trade (same host, same clock), joined by trade "
            f"id; {plan.get('latency_seconds')} s measured after 0.5 s of warm-up at each rate. "
            "For ccxt.pro each trade of a returned batch counts, so its coalescing shows as "
            "latency."
        )
        add("")
        add(
            "| contender | rate | p50 µs | p99 µs | p99.9 µs | max µs | delivered/frames "
            "| runs ok | each run p50 / p99 µs |"
        )
        add("|---|---:|---:|---:|---:|---:|---:|---:|---|")
        for key in keys:
            for rate in sorted({r for _, r in lat}):
                a = lat.get((key, rate))
                if a is None:
                    continue
                if a["p50"] is None:
                    add(
                        f"| {labels[key]} | {rate // 1000}k | failed: {_escape(a['error'])} "
                        "| | | | | "
                        f"0/{a['runs']} |"
                    )
                    continue
                add(
                    f"| {labels[key]} | {rate // 1000}k | {_us(a['p50'])} | {_us(a['p99'])} | "
                    f"{_us(a['p99.9'])} | {_us(a['max'])} | {a['delivered_ratio']:.2f} | "
                    f"{a['ok']}/{a['runs']} | "
                    + ", ".join(f"{_us(p50)} / {_us(p99)}" for p50, p99 in a["each"])
                    + " |"
                )
        add("")
    soak = detail.get("soak", {})
    if soak:
        add("### Soak")
        add("")
        add(
            f"All contenders at once, each on its own paced trade stream at "
            f"{plan.get('soak_rate'):,} msgs/s for {plan.get('soak_seconds'):.0f} s; "
            "RSS sampled in-process; drift = last sample − first sample after 5 s of warm-up."
        )
        add("")
        add(
            "| contender | RSS after warm-up MiB | drift MiB | drift MiB/min | peak RSS MiB "
            "| status |"
        )
        add("|---|---:|---:|---:|---:|---|")
        for key in keys:
            r = soak.get(key)
            if r is None:
                continue
            if "drift_mib" not in r:
                add(f"| {labels[key]} | | | | | {_escape(str(r.get('error')))} |")
                continue
            add(
                f"| {labels[key]} | {r['rss_start_mib']:.1f} | {r['drift_mib']:+.2f} | "
                f"{r['drift_mib_per_min']:+.2f} | {r['peak_rss'] / MiB:.1f} | "
                f"{'ok' if r.get('ok') else _escape(str(r.get('error')))} |"
            )
        add("")
    add("## Contenders and how each is driven")
    add("")
    seen = set()
    for phase in ("throughput", "latency", "soak"):
        for r in data.get(phase, []):
            if r["key"] in seen or "library" not in r:
                continue
            seen.add(r["key"])
            shim = r.get("shim") or []
            add(
                f"* **{r['label']}**: WebSocket {r.get('library')}, decoder {r.get('decoder')}, "
                f"loop {r.get('loop')}"
                + (f"; {r['policy']}" if r.get("policy") else "")
                + (f"; workaround: {'; '.join(shim)}" if shim else "")
            )
    add("")
    failures = []
    for phase in ("throughput", "latency", "soak"):
        for r in data.get(phase, []):
            if not r.get("ok"):
                failures.append(
                    f"* {phase}"
                    + (f" {r.get('kind')}" if phase == "throughput" else "")
                    + (f" {r.get('rate', 0) // 1000}k/s" if phase == "latency" else "")
                    + f", {r['label']}: {_escape(str(r.get('error')))}"
                )
    if failures:
        add("## Runs that failed (shown as failed above, never as a number)")
        add("")
        lines.extend(sorted(set(failures)))
        add("")
    behind = [
        f"* {fig.name}: behind {labels[k]} ({fig.ratio(k):.2f}×)"
        for fig in figures
        for k in keys
        if not k.startswith(BASE) and fig.ratio(k) is not None and fig.ratio(k) < 1  # type: ignore[operator]
    ]
    book = data.get("book") or {}
    if book.get("ok"):
        med, names = book["median"], book["names"]
        t = med[names["tickloop"]]
        for short, full in names.items():
            if short == "tickloop":
                continue
            for metric, what, higher in (
                ("apply", "book apply updates/s", True),
                ("apply_best", "book apply + best read updates/s", True),
                ("top10_us", "book top-10 read on an unchanged book", False),
                ("apply_top10_us", "book apply + top-10 read per update", False),
            ):
                v = med[full][metric]
                r = t[metric] / v if higher else v / t[metric]
                if r < 1:
                    behind.append(f"* {what}: behind {full} ({r:.2f}×)")
    add("## Where tickloop is behind, and why")
    add("")
    if behind:
        lines.extend(behind)
        add("")
    else:
        add("Nowhere in this run.")
        add("")
    if notes:
        add(notes.strip())
        add("")
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_text("\n".join(lines) + "\n")


#: Contenders that read depth diffs as the venue sent them, with no local book.
RAW_DEPTH = ("tickloop-raw", "tickloop-raw-iter")
PLAIN_PEERS = ("naive", "cryptofeed")


def raw_depth_lines(
    tp: dict[tuple[str, str], dict[str, Any]], keys: list[str], labels: dict[str, str]
) -> list[str]:
    """Depth diffs like for like: tickloop's raw delta stream (a typed BookDelta per diff, no
    book) against the peers, with the ratio against each (the summary's ratios are against the
    book stream, which does more per diff)."""
    raw = [k for k in keys if k in RAW_DEPTH and (tp.get((k, "depth")) or {}).get("msgs")]
    peers = [k for k in keys if k in PLAIN_PEERS and (tp.get((k, "depth")) or {}).get("msgs")]
    if not raw:
        return []
    out = [
        "",
        "### Depth diffs like for like: the raw delta stream",
        "",
        "`subscribe_book_deltas()` / `book_deltas()` hand user code one typed `BookDelta` (exact "
        "Decimals, venue sequence numbers) per diff, in order, none dropped, and keep no book: "
        "the work the naive loop does (a dict per diff), typed. Ratios are tickloop's advantage "
        "over the peer in messages/s and in CPU time per message (above 1× ahead). cryptofeed "
        "keeps a book, so its ratios are not like for like.",
        "",
        "| contender | msgs/s | CPU µs/msg | "
        + " | ".join(f"vs {labels[p]} (msgs/s, CPU)" for p in peers)
        + " |",
        "|---|---:|---:|" + "---:|" * len(peers),
    ]
    for key in raw:
        mine = tp[(key, "depth")]
        cells = []
        for peer in peers:
            other = tp[(peer, "depth")]
            rate = mine["msgs"] / other["msgs"]
            cpu = other["cpu_us"] / mine["cpu_us"] if mine["cpu_us"] else math.nan
            cells.append(f"{rate:.2f}×, {cpu:.2f}×")
        out.append(
            f"| {labels[key]} | {_rate(mine['msgs'])} | {_us(mine['cpu_us'])} | "
            + " | ".join(cells)
            + " |"
        )
    return out


def _escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")[:300]
