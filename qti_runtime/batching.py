"""Micro-batching: many consumed messages handled in one database transaction.

The broker hands a consumer up to `prefetch` messages at once, each in its own task. A subscription with
`Batching` lets those tasks join a batch that one call of the batch handler processes (typically one
transaction: one inbox insert for all ids, one statement per table). Every message is acknowledged by its
own task only after the batch has committed, so a crash loses nothing. If the batch fails, every message
of it falls back to the ordinary one-message path with its retries and dead-lettering, so one poisonous
message cannot hold back the others, nor go unanswered.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from qti_contracts.envelope import RawEvent
from qti_runtime.delivery import Delivery
from qti_runtime.logging import get_logger

log = get_logger(__name__)

BatchItem = tuple[RawEvent, Delivery]
BatchHandler = Callable[[Sequence[BatchItem]], Awaitable[None]]


@dataclass(frozen=True)
class Batching:
    """How a subscription batches: at most `max_size` messages, waiting at most `max_wait_seconds`.

    Keep `max_size` at or below half the prefetch, so that one batch fills while another commits.
    """

    handler: BatchHandler
    max_size: int = 100
    max_wait_seconds: float = 0.005
    # Batches run at the same time. While they run, arriving messages wait and form the next batch, so
    # batches grow with the load instead of many small transactions contending for the same rows.
    max_running: int = 1
    # The event types that are batched; None for all. Others take the one-message path.
    types: frozenset[str] | None = None


class MicroBatcher:
    """Collects submitted messages and runs the batch handler on them, at most `max_running` at a time."""

    def __init__(self, batching: Batching) -> None:
        self._batching = batching
        self._pending: list[tuple[BatchItem, asyncio.Future[bool]]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._running: set[asyncio.Task[None]] = set()

    def accepts(self, event_type: str) -> bool:
        return self._batching.types is None or event_type in self._batching.types

    async def submit(self, event: RawEvent, delivery: Delivery) -> bool:
        """Wait until the message's batch has run: True if it committed, False if it failed."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[bool] = loop.create_future()
        self._pending.append(((event, delivery), done))
        if len(self._pending) >= self._batching.max_size:
            self._flush()
        elif self._timer is None:
            self._timer = loop.call_later(self._batching.max_wait_seconds, self._flush)
        return await done

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self._pending and len(self._running) < self._batching.max_running:
            size = self._batching.max_size
            batch, self._pending = self._pending[:size], self._pending[size:]
            task = asyncio.create_task(self._run(batch), name="micro-batch")
            self._running.add(task)
            task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        if self._pending:
            try:
                self._flush()  # what arrived while the batch ran is the next batch, without further wait
            except Exception as exc:  # e.g. the loop is closing: nobody may wait for a batch for ever
                log.error("batch.flush_failed", error=repr(exc))
                self._fail_pending()

    def _fail_pending(self) -> None:
        pending, self._pending = self._pending, []
        for _, done in pending:
            if not done.done():
                done.set_result(False)

    async def _run(self, batch: list[tuple[BatchItem, asyncio.Future[bool]]]) -> None:
        committed = False
        try:
            await self._batching.handler([item for item, _ in batch])
            committed = True
        except Exception as exc:
            # Expected now and then (a deadlock with another replica, a message the batch rejects):
            # the one-message path sorts it out with its own retries and dead-lettering.
            log.info("batch.failed", size=len(batch), error=repr(exc)[:500])
        finally:
            # Whatever ends the batch (also a cancellation), every waiting message learns of it: a
            # future left pending would leave its message unsettled until the channel closes.
            for _, done in batch:
                if not done.done():
                    done.set_result(committed)
