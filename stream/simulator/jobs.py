"""Background jobs (docs/zendesk-api.md §7): queued → working → completed, with per-item results.

Items are applied when the job completes, so their effects appear when a client would see ``completed``.

In ``clock`` mode the queue is a small discrete-event schedule, fixed when a job is enqueued: a job waits at
least ``job_queued_ms``, then for a free worker (``job_workers`` per account [I]; 0 = no bound), then works
``job_working_ms + job_ms_per_item × total``. Jobs complete in the order of their scheduled end, at the first
request (or control call) that sees the simulator clock past it, and their items are applied with that end
time as "now". In ``per_poll`` mode each GET of a job moves it one state and workers play no part.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from stream.simulator.clock import iso_timestamp
from stream.simulator.errors import ZendeskError
from stream.simulator.options import SimulatorOptions

# Applies the items at the given completion time and returns their results.
ItemRunner = Callable[[float], list[dict[str, Any]]]
TERMINAL = frozenset({"completed", "failed", "killed"})


@dataclass(slots=True)
class Job:
    id: str
    job_type: str  # e.g. "Bulk Create Organization"
    job_class: str  # the name TooManyJobs reports, e.g. "UserBulkUpdateJobV2"
    total: int
    created_at: float
    run_items: ItemRunner = field(repr=False)
    working_message: str = "Processing item"  # "Creating organization" → "Creating organization #31"
    starts_at: float = 0.0  # clock mode: when a worker picks it up
    finishes_at: float = 0.0  # clock mode: when its items are applied
    status: str = "queued"
    progress: int | None = None
    message: str | None = None
    results: list[dict[str, Any]] | None = None

    @property
    def in_flight(self) -> bool:
        return self.status not in TERMINAL


class JobQueue:
    def __init__(self, *, options: SimulatorOptions) -> None:
        self.options = options
        self.jobs: dict[str, Job] = {}
        self._in_flight: dict[str, Job] = {}
        self._worker_free_at: list[float] = []
        self._rng = random.Random(options.random_seed + 1)  # noqa: S311 - simulation, not security

    def in_flight(self) -> list[Job]:
        return list(self._in_flight.values())

    def enqueue(
        self,
        *,
        job_type: str,
        job_class: str,
        total: int,
        run_items: ItemRunner,
        now: float,
        working_message: str = "Processing item",
    ) -> Job:
        """A new queued job; 429 TooManyJobs when ``max_inflight_jobs`` are queued or running (any kind)."""
        self.advance(now)
        busy = self.in_flight()
        if len(busy) >= self.options.max_inflight_jobs:
            raise self._too_many_jobs(busy, job_class, now)
        job = Job(
            id=f"V3-{self._rng.getrandbits(128):032x}",
            job_type=job_type,
            job_class=job_class,
            total=total,
            created_at=now,
            run_items=run_items,
            working_message=working_message,
        )
        self._schedule(job)
        self.jobs[job.id] = job
        self._in_flight[job.id] = job
        return job

    def _schedule(self, job: Job) -> None:
        options = self.options
        ready_at = job.created_at + options.job_queued_ms / 1000.0
        duration = (options.job_working_ms + options.job_ms_per_item * job.total) / 1000.0
        start = ready_at
        if options.job_workers > 0 and options.job_mode == "clock":
            free = self._worker_free_at
            del free[options.job_workers :]
            free.extend([-math.inf] * (options.job_workers - len(free)))
            worker = min(range(len(free)), key=free.__getitem__)
            start = max(ready_at, free[worker])
            free[worker] = start + duration
        job.starts_at, job.finishes_at = start, start + duration

    def _too_many_jobs(self, busy: list[Job], job_class: str, now: float) -> ZendeskError:
        """[I] status 429 (the body is documented, the status is not), Retry-After until the next job ends."""
        next_end = min(job.finishes_at for job in busy)
        retry_after = max(math.ceil(next_end - now), 1)
        return ZendeskError(
            429,
            {
                "error": "TooManyJobs",
                "description": f"Too many {job_class} jobs are currently queued or running. Try again later.",
                "current_job_ids": [job.id for job in busy],
            },
            headers=[("retry-after", str(retry_after))],
        )

    def advance(self, now: float) -> None:
        """Clock mode: complete, in schedule order, every job whose end has passed; update the others."""
        if self.options.job_mode != "clock" or not self._in_flight:
            return
        for job in sorted(self._in_flight.values(), key=lambda j: (j.finishes_at, j.created_at)):
            if job.finishes_at <= now:
                self._complete(job, job.finishes_at)
            elif job.starts_at <= now:
                duration = job.finishes_at - job.starts_at
                done = math.floor(job.total * (now - job.starts_at) / duration) if duration > 0 else 0
                self._work(job, min(done, max(job.total - 1, 0)))

    def poll(self, job_id: str, now: float) -> Job | None:
        job = self.jobs.get(job_id)
        if job is None:
            return None
        if self.options.job_mode == "per_poll" and job.in_flight:
            if job.status == "queued":
                self._work(job, job.total // 2)
            else:
                self._complete(job, now)
        return job

    def complete_all(self, now: float) -> None:
        for job in sorted(self._in_flight.values(), key=lambda j: (j.finishes_at, j.created_at)):
            self._complete(job, now)
        self._worker_free_at = [min(free, now) for free in self._worker_free_at]

    @staticmethod
    def _work(job: Job, progress: int) -> None:
        job.status = "working"
        job.progress = progress
        job.message = f"{job.working_message} #{progress}"

    def _complete(self, job: Job, now: float) -> None:
        self._in_flight.pop(job.id, None)
        job.results = job.run_items(now)
        job.status = "completed"
        job.progress = job.total
        job.message = f"Completed at {iso_timestamp(now).replace('T', ' ').replace('Z', ' +0000')}"


def job_json(job: Job, url: str) -> dict[str, Any]:
    return {
        "id": job.id,
        "url": url,
        "job_type": job.job_type,
        "total": job.total,
        "progress": job.progress,
        "status": job.status,
        "message": job.message,
        "results": job.results,
    }
