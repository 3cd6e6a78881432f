"""The server's event stream, measured: bus publish -> SSE client, publish -> drawn in Chromium,
and the dashboard's JS heap under a long burst.

Three parts, each with the server (``tickloop.server.serve``) in this process and events
published on its bus at a paced rate (trades on one topic, each stamped by the bus at publish):

1. **publish -> SSE receive**: a client in a child process (plain asyncio socket, msgspec
   decoding only the event's ``ts``) reads ``/api/events/stream`` and records, per event, its
   wall clock minus the event's publish time (one host, one clock). The baseline, in the same
   run and the same process as the server, is a plain bus subscriber (``async for``): what the
   bus alone costs.
2. **publish -> DOM**: the dashboard open in headless Debian chromium (Playwright); the page
   records, per animation frame, the age of the oldest trade it draws (``window.tickloop
   .display()``).
3. **JS heap**: ``--events`` (1,000,000 by default) trades published as fast as the loop allows,
   with the page's JS heap measured through the DevTools protocol (after a forced GC) at
   checkpoints; the page's buffers are bounded, so the heap should stay flat.

Run: ``.venv/bin/python -m bench.bench_server [--quick] [--seconds S] [--rates 1000,10000]``.
Prints a table; figures move ±30-50% between runs on the shared machine: compare within one run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec

from tickloop import models
from tickloop.bus import Bus
from tickloop.server import Platform, create_app, serve


class _Stamp(msgspec.Struct):
    type: str
    ts: int


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _trades(n: int) -> list[models.Trade]:
    return [models.Trade(venue="sim", symbol="BTC-USD", id=i, price=Decimal("60000.00") + i % 100,
                         size=Decimal("0.0100"), side=models.Side.BUY, ts=time.time_ns())
            for i in range(n)]


async def _publish_paced(bus: Bus, rate: float, seconds: float) -> int:
    """Publish ``rate`` trades a second for ``seconds``, in 1 ms ticks; returns the count."""
    pool = _trades(1000)
    loop = asyncio.get_running_loop()
    start = loop.time()
    sent = 0
    while (elapsed := loop.time() - start) < seconds:
        due = int(elapsed * rate) - sent
        for _ in range(due):
            bus.publish("trade.sim.BTC-USD", pool[sent % 1000])
            sent += 1
        await asyncio.sleep(0.001)
    return sent


# ------------------------------------------------------------------------- 1. SSE receive
async def _client(port: int, count: int) -> list[float]:
    """Child process: read trades from the stream until a signal event (the end) or ``count``
    trades; returns their latencies (µs)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /api/events/stream?types=trade,signal HTTP/1.1\r\nHost: x\r\n"
                 b"Accept: text/event-stream\r\n\r\n")
    await writer.drain()
    decode = msgspec.json.Decoder(_Stamp).decode
    latencies: list[float] = []
    await reader.readline()  # the status line: the server's side of the stream is live
    print("ready", flush=True)
    while len(latencies) < count:
        line = await reader.readline()
        if not line:
            break
        if line.startswith(b"data: "):
            now = time.time_ns()
            stamp = decode(line[6:])
            if stamp.type != "trade":
                break
            latencies.append((now - stamp.ts) / 1000)
    writer.close()
    return latencies


def _read_latencies(path: str) -> list[float]:
    values = [float(x) for x in Path(path).read_text().split()]
    os.unlink(path)
    return values


async def sse_latency(rate: float, seconds: float) -> dict[str, Any]:
    async with Bus(name="bench") as bus:
        app = create_app(Platform(bus), token="bench", replay=100_000)
        baseline: list[float] = []
        sub = bus.subscribe("trade.*", maxsize=1_000_000, name="baseline")

        async def base_reader() -> None:
            async for event in sub:
                baseline.append((time.time_ns() - event.ts) / 1000)

        async with serve(app, "127.0.0.1", 0) as served:
            expected = int(rate * seconds) + 1000
            out = f"/tmp/tickloop-bench-sse-{os.getpid()}.txt"
            child = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bench.bench_server", "--client", str(served.port),
                str(expected), out, stdout=subprocess.PIPE)
            assert child.stdout is not None
            await child.stdout.readline()  # "ready": the stream is live
            reader = asyncio.get_running_loop().create_task(base_reader())
            sent = await _publish_paced(bus, rate, seconds)
            bus.publish("signal.bench", models.Signal(bot="bench", name="end", ts=0))
            try:
                await asyncio.wait_for(child.wait(), 30)
            except TimeoutError:
                child.kill()
                await child.wait()
            sub.close()
            await reader
        sse = _read_latencies(out)
    return {"rate": rate, "sent": sent, "sse": sse, "bus": baseline}


# ----------------------------------------------------------------------------- 2 and 3
async def _browser(url: str) -> Any:
    from playwright.async_api import async_playwright

    pw = await async_playwright().start()
    browser = await pw.chromium.launch(
        executable_path=shutil.which("chromium") or "/usr/bin/chromium",
        args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
              "--disable-background-networking", "--disable-component-update",
              "--disable-sync"])
    page = await browser.new_page(viewport={"width": 1400, "height": 860})
    await page.goto(url)
    await page.wait_for_function("document.getElementById('h-stream').textContent"
                                 " === 'connected'")
    return pw, browser, page


async def dom_latency(rate: float, seconds: float) -> dict[str, Any]:
    async with Bus(name="bench") as bus:
        app = create_app(Platform(bus), token="bench")
        async with serve(app, "127.0.0.1", 0) as served:
            pw, browser, page = await _browser(served.url)
            try:
                await _publish_paced(bus, rate, 1.0)  # warm-up: the chart exists
                before = len(await page.evaluate("window.tickloop.display()"))
                sent = await _publish_paced(bus, rate, seconds)
                samples = (await page.evaluate("window.tickloop.display()"))[before:]
            finally:
                await browser.close()
                await pw.stop()
    return {"rate": rate, "sent": sent, "dom": samples}


async def js_heap(events: int) -> dict[str, Any]:
    checkpoints = sorted({0, events // 10, events // 4, events // 2, 3 * events // 4, events})
    async with Bus(name="bench") as bus:
        app = create_app(Platform(bus), token="bench")
        async with serve(app, "127.0.0.1", 0) as served:
            pw, browser, page = await _browser(served.url)
            cdp = await page.context.new_cdp_session(page)
            pool = _trades(1000)
            heap: list[tuple[int, int, float, int]] = []
            started = time.perf_counter()
            try:
                sent = 0
                for mark in checkpoints:
                    while sent < mark:
                        for _ in range(min(500, mark - sent)):
                            bus.publish("trade.sim.BTC-USD", pool[sent % 1000])
                            sent += 1
                        await asyncio.sleep(0)
                    # let the page catch up with all the server has, then measure after a GC
                    await asyncio.sleep(0.05)
                    await page.wait_for_function(
                        "s => parseInt((window.tickloop.lastEventId() || '-0').split('-')[1])"
                        " >= s", arg=app.hub.seq, timeout=300_000)
                    await cdp.send("HeapProfiler.collectGarbage")
                    usage = await cdp.send("Runtime.getHeapUsage")
                    received = await page.evaluate("window.tickloop.received()")
                    heap.append((mark, received, usage["usedSize"] / 2**20,
                                 await page.evaluate("document.getElementsByTagName('*').length")))
            finally:
                await browser.close()
                await pw.stop()
    return {"heap": heap, "seconds": time.perf_counter() - started,
            "lost": app.hub.stats()["lost_notices"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="short runs (a smoke test)")
    parser.add_argument("--seconds", type=float, default=None)
    parser.add_argument("--rates", default="1000,10000")
    parser.add_argument("--events", type=int, default=None, help="events of the heap part")
    parser.add_argument("--client", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        port, count, out = args.client
        latencies = asyncio.run(_client(int(port), int(count)))
        Path(out).write_text("\n".join(f"{v:.1f}" for v in latencies))
        return
    seconds = args.seconds or (2.0 if args.quick else 8.0)
    events = args.events or (50_000 if args.quick else 1_000_000)
    rates = [float(r) for r in args.rates.split(",")]
    print(f"tickloop server benchmark: {seconds:.0f} s per rate, heap part {events:,} events; "
          f"load average {os.getloadavg()[0]:.2f}")
    print("\n| rate (events/s) | path | events | p50 (ms) | p99 (ms) | max (ms) |")
    print("|---:|---|---:|---:|---:|---:|")
    for rate in rates:
        sse = asyncio.run(sse_latency(rate, seconds))
        for name, values in (("bus subscriber (baseline)", sse["bus"]),
                             ("SSE client, another process", sse["sse"])):
            ms = [v / 1000 for v in values]
            print(f"| {rate:,.0f} | {name} | {len(ms):,} | {_pct(ms, .5):.2f} | "
                  f"{_pct(ms, .99):.2f} | {max(ms, default=float('nan')):.2f} |", flush=True)
        if shutil.which("chromium"):
            dom = asyncio.run(dom_latency(rate, seconds))["dom"]
            print(f"| {rate:,.0f} | publish -> drawn in Chromium (per frame) | {len(dom):,} | "
                  f"{_pct(dom, .5):.2f} | {_pct(dom, .99):.2f} | "
                  f"{max(dom, default=float('nan')):.2f} |", flush=True)
    if shutil.which("chromium"):
        result = asyncio.run(js_heap(events))
        print(f"\nJS heap, {events:,} trades published at full speed "
              f"({result['seconds']:.0f} s; lost notices: {result['lost']}):\n")
        print("| published | received by the page | JS heap after GC (MiB) | DOM nodes |")
        print("|---:|---:|---:|---:|")
        for mark, received, mib, nodes in result["heap"]:
            print(f"| {mark:,} | {received:,} | {mib:.2f} | {nodes:,} |")
    else:
        print("\nchromium is not installed: the browser parts were skipped")


if __name__ == "__main__":
    main()
