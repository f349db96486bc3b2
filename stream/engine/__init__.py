"""The stream engine: consumer group, per-key lanes, offset tracking and commits, retry and DLQ routing."""
