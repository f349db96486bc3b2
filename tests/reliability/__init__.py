"""Reliability scenarios of issue 15: each proves one property end to end (real Kafka, the service as a
process, the Zendesk simulator), in a short variant for CI and a full one marked slow."""
