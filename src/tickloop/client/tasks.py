"""Ownership of background tasks: every task has an owner, and the owner awaits it on close.

The streaming client, its book feed, its trade feed and each async-handler consumer start tasks
that outlive the call that started them (the reconciler, trade backfills, REST book snapshots,
resubscriptions, handler workers). An :class:`asyncio.TaskGroup` wants one ``async with`` block
around their whole life, which a client opened by ``start()`` and ended by ``aclose()`` does not
have, and it cancels every sibling when one fails, which a backfill failing must not do. So one
small owner does what matters: it keeps a reference to each task until it is done (a task the
loop only weakly references can vanish mid-flight), and :meth:`TaskOwner.aclose` cancels and
awaits them all. :func:`reap` is the await half on its own: a task's failure is logged, never
raised into the closer, and the closer's own cancellation is never swallowed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Iterable
from typing import Any

__all__ = ["TaskOwner", "reap"]

log = logging.getLogger("tickloop.client.tasks")


async def reap(tasks: Iterable[asyncio.Task[Any]], *, what: str = "task") -> None:
    """Await each of ``tasks`` (usually just cancelled). A task that failed is logged; a task
    that was cancelled is fine, unless the task running this was cancelled itself, which is
    passed on."""
    for task in tasks:
        try:
            await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise
        except Exception:
            log.exception("%s %s failed during close", what, task.get_name())


class TaskOwner:
    """Holds background tasks until they are done; :meth:`aclose` cancels and awaits them."""

    __slots__ = ("_tasks", "closed", "what")

    def __init__(self, what: str = "task") -> None:
        self.what = what  # named in the log line of a task that failed
        self.closed = False
        self._tasks: set[asyncio.Task[Any]] = set()

    def __len__(self) -> int:
        return len(self._tasks)

    def spawn(self, coro: Coroutine[Any, Any, None], *, name: str) -> asyncio.Task[None]:
        """Start ``coro`` as a task owned here until it ends."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def aclose(self, *, cancel: bool = True) -> None:
        """Cancel (unless ``cancel`` is False: let them finish) and await every task, including
        those started while waiting."""
        self.closed = True
        while self._tasks:
            tasks = list(self._tasks)
            if cancel:
                for task in tasks:
                    task.cancel()
            await reap(tasks, what=self.what)
            self._tasks.difference_update(tasks)
