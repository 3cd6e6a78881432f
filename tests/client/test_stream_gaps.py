"""A Gap means a gap (issue 15, case 9): reconnects with backfill off report a Gap only when
trades were really missed, with the exact ids, against the embedded exchange."""

from __future__ import annotations

from tickloop.client.stream import StreamClient
from tickloop.models import Gap, Reconnected, StatusEvent, Trade
from tickloop.sim import SimExchange

from .helpers import until


def _next_trade(ex: SimExchange, symbol: str) -> int:
    before = len(ex.trades(symbol))
    while len(ex.trades(symbol)) == before:
        ex.step(symbol)
    last = ex.trades(symbol)[-1].id
    assert last is not None
    return last


async def test_case9_reconnects_without_loss_report_no_gap() -> None:
    async with SimExchange(seed=3, symbols=["BTC-USD"], rate=0) as ex:
        ex.pause_flow()
        feed = StreamClient("sim", url=ex.ws_url, backfill=False, base_wait=0.005, max_wait=0.02)
        async with feed:
            status: list[StatusEvent] = []
            await feed.subscribe_status(status.append)
            got: list[Trade] = []
            await feed.subscribe_trades("BTC-USD", got.append)
            last = _next_trade(ex, "BTC-USD")
            await until(lambda: bool(got) and got[-1].id == last, "first trade")
            for i in range(30):
                before = sum(isinstance(e, Reconnected) for e in status)
                await ex.faults.disconnect_all()
                await until(
                    lambda b=before: sum(isinstance(e, Reconnected) for e in status) > b,  # type: ignore[misc]
                    f"reconnect {i}",
                )
                last = _next_trade(ex, "BTC-USD")
                await until(lambda n=last: got[-1].id == n, f"trade after reconnect {i}")  # type: ignore[misc]
            assert not [e for e in status if isinstance(e, Gap)]
            log = [t.id for t in ex.trades("BTC-USD") if t.id is not None and t.id >= got[0].id]
            assert [t.id for t in got] == log

            # One outage that does lose trades: exactly one Gap, with the missing ids.
            before = sum(isinstance(e, Reconnected) for e in status)
            ex.resume_flow()
            await ex.faults.disconnect_all()
            lost = [_next_trade(ex, "BTC-USD") for _ in range(3)]
            ex.pause_flow()
            await until(lambda: sum(isinstance(e, Reconnected) for e in status) > before, "back")
            last = _next_trade(ex, "BTC-USD")
            await until(lambda: got[-1].id == last, "trade after the lossy outage")
            gaps = [e for e in status if isinstance(e, Gap)]
            assert len(gaps) == 1 and not gaps[0].recovered
            assert gaps[0].first_missing is not None and gaps[0].first_missing <= lost[0]
            assert gaps[0].last_missing is not None and gaps[0].last_missing >= lost[-1]
