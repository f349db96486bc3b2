"""Recovery tools: where a consumer group stands (`status`); replay and rewind come with issue 11."""
