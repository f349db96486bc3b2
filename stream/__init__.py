"""zendesk-stream: Segment events from Kafka to Zendesk, the job of Segment's Zendesk destination."""

__version__ = "0.1.0"
