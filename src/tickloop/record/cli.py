"""``tickloop record``: the command's logic (the typer shell is in :mod:`tickloop.cli`).

A rich progress bar on standard error while recording (records, frames, compressed size), then
one summary line on standard output. Bad options are one line naming the option (exit 2).
"""

from __future__ import annotations

import asyncio

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from ..exceptions import ConfigError
from .recorder import RecordStats, _parse_channels, record
from .writer import check_out

__all__ = ["run_cli"]


def _list(text: str | None, option: str) -> list[str] | None:
    if text is None:
        return None
    items = [s.strip() for s in text.split(",") if s.strip()]
    if not items:
        raise ConfigError(f"{option} lists nothing", field=option)
    return items


def run_cli(
    *,
    out: str,
    seconds: float,
    venue: str,
    url: str | None,
    symbols: str | None,
    channels: str,
    segment_mb: float,
    segment_seconds: float,
) -> None:
    if not seconds > 0:
        raise ConfigError(f"--seconds {seconds:g} must be > 0", field="--seconds")
    if not segment_mb > 0:
        raise ConfigError(f"--segment-mb {segment_mb:g} must be > 0", field="--segment-mb")
    if not segment_seconds > 0:
        raise ConfigError(
            f"--segment-seconds {segment_seconds:g} must be > 0", field="--segment-seconds"
        )
    from ..venues import stream_codec

    try:
        stream_codec(venue)
    except Exception:
        raise ConfigError(f"--venue {venue!r} is not a known venue", field="--venue") from None
    if venue != "sim" and url is None and symbols is None:
        raise ConfigError(f"--symbols is needed for --venue {venue}", field="--symbols")
    names = _list(symbols, "--symbols") or ["BTC-USD"]
    chans = _parse_channels(_list(channels, "--channels") or [])
    check_out(out)
    err = Console(stderr=True)
    out_console = Console(soft_wrap=True)
    with Progress(
        TextColumn("recording"),
        BarColumn(),
        TextColumn("{task.fields[line]}"),
        TimeElapsedColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal,
    ) as bar:
        task = bar.add_task("record", total=seconds, line="")

        def progress(stats: RecordStats, elapsed: float) -> None:
            bar.update(
                task,
                completed=min(elapsed, seconds),
                line=f"{stats.frames} frames, {stats.records} records, "
                f"{stats.compressed_bytes / 1024:.0f} KiB",
            )

        stats = asyncio.run(
            record(
                out,
                seconds=seconds,
                venue=venue,
                url=url,
                symbols=names,
                channels=chans,
                progress=progress,
                max_segment_bytes=int(segment_mb * 1024 * 1024),
                max_segment_seconds=segment_seconds,
            )
        )
    out_console.print(
        f"recorded {stats.records} records ({stats.frames} frames, {stats.events} events) "
        f"in {stats.segments} segment(s), {stats.compressed_bytes} bytes compressed "
        f"from {stats.raw_bytes}: {out}",
        highlight=False,
    )
