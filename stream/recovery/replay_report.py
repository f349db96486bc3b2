"""What `replay` shows: a live progress line (count, rate, ETA) on a terminal, plain lines every few
seconds otherwise, and the summary at the end."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TextIO

from stream.recovery.replay import ReplayProgress, ReplaySummary

PLAIN_EVERY_S = 5.0


class ProgressLine:
    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._live = stream.isatty()
        self._last_plain = -PLAIN_EVERY_S
        self._shown = False

    def show(self, progress: ReplayProgress) -> None:
        text = describe(progress)
        if self._live:
            self._stream.write("\r\x1b[K" + text)
            self._stream.flush()
            self._shown = True
        elif progress.elapsed_s - self._last_plain >= PLAIN_EVERY_S:
            self._last_plain = progress.elapsed_s
            self._stream.write(text + "\n")
            self._stream.flush()

    def done(self) -> None:
        if self._live and self._shown:
            self._stream.write("\n")
            self._stream.flush()


def describe(progress: ReplayProgress) -> str:
    rate = progress.read / progress.elapsed_s if progress.elapsed_s > 0 else 0.0
    left = max(progress.total - progress.read, 0)
    eta = f", ETA {left / rate:.0f} s" if rate > 0 and left else ""
    return (
        f"replay: {progress.read:,} of {progress.total:,} dead letters read, "
        f"{progress.replayed:,} to the retry path, {rate:,.0f}/s{eta}"
    )


def report(summary: ReplaySummary, *, dry_run: bool, retry_topic: str) -> str:
    verb = "would go" if dry_run else "went"
    lines = [
        f"read {summary.read:,} dead letters; {summary.matched:,} match; {summary.replayed:,} {verb} to "
        f"{retry_topic}" + (" (dry run: nothing changed)" if dry_run else ""),
    ]
    if summary.by_reason:
        lines.append("  by reason: " + _counts(summary.by_reason))
    if summary.by_status:
        lines.append("  by Zendesk status: " + _counts(summary.by_status))
    if summary.without_value:
        lines.append(f"  {summary.without_value:,} cannot be re-sent: dead-lettered without their value")
    if summary.not_from_input:
        lines.append(f"  {summary.not_from_input:,} not re-sent: they came from another input topic")
    if summary.other_group:
        lines.append(f"  {summary.other_group:,} belong to another consumer group: left alone")
    if summary.sample:
        lines.append("  sample:")
        for item in summary.sample:
            lines.append(
                f"    dlq {item['dlq']} key {item['key']} {item['reason']} (status {item['http_status']}), "
                f"from {item['original']}, first failed {item['first_failure_at']}"
            )
    return "\n".join(lines)


def _counts(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{name} {count:,}" for name, count in sorted(counts.items(), key=lambda kv: -kv[1]))
