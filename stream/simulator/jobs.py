"""Background jobs (zendesk-api.md §7): queued → working → completed, with per-item results.

Items are applied when the job completes, so their effects appear when a client would see ``completed``.
In ``clock`` mode a job moves on with the simulator clock; in ``per_poll`` mode each GET moves it one state.
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

ItemRunner = Callable[[], list[dict[str, Any]]]
TERMINAL = frozenset({"completed", "failed", "killed"})


@dataclass(slots=True)
class Job:
    id: str
    job_type: str  # e.g. "Bulk Create Or Update User"
    job_class: str  # the name TooManyJobs reports, e.g. "UserBulkUpdateJobV2"
    total: int
    created_at: float
    run_items: ItemRunner = field(repr=False)
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
        self._rng = random.Random(options.random_seed + 1)  # noqa: S311 - simulation, not security

    def in_flight(self) -> list[Job]:
        return list(self._in_flight.values())

    def enqueue(self, *, job_type: str, job_class: str, total: int, run_items: ItemRunner, now: float) -> Job:
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
        )
        self.jobs[job.id] = job
        self._in_flight[job.id] = job
        return job

    def _too_many_jobs(self, busy: list[Job], job_class: str, now: float) -> ZendeskError:
        """[I] status 429 (the body is documented, the status is not) with a Retry-After hint."""
        oldest_done_at = min(job.created_at for job in busy) + self._duration_seconds()
        retry_after = max(math.ceil(oldest_done_at - now), 1)
        return ZendeskError(
            429,
            {
                "error": "TooManyJobs",
                "description": f"Too many {job_class} jobs are currently queued or running. Try again later.",
                "current_job_ids": [job.id for job in busy],
            },
            headers=[("retry-after", str(retry_after))],
        )

    def _duration_seconds(self) -> float:
        return (self.options.job_queued_ms + self.options.job_working_ms) / 1000.0

    def advance(self, now: float) -> None:
        """Clock mode: move every job to the state its age calls for."""
        if self.options.job_mode != "clock" or not self._in_flight:
            return
        queued_for = self.options.job_queued_ms / 1000.0
        for job in self.in_flight():
            age = now - job.created_at
            if age >= self._duration_seconds():
                self._complete(job, now)
            elif age >= queued_for and job.status == "queued":
                self._start(job)

    def poll(self, job_id: str, now: float) -> Job | None:
        job = self.jobs.get(job_id)
        if job is None:
            return None
        if self.options.job_mode == "per_poll" and job.in_flight:
            if job.status == "queued":
                self._start(job)
            else:
                self._complete(job, now)
        return job

    def complete_all(self, now: float) -> None:
        for job in self.in_flight():
            self._complete(job, now)

    @staticmethod
    def _start(job: Job) -> None:
        job.status = "working"
        job.progress = job.total // 2
        job.message = f"Processing item #{job.progress}"

    def _complete(self, job: Job, now: float) -> None:
        self._in_flight.pop(job.id, None)
        job.results = job.run_items()
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
