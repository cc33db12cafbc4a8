"""Running in production: background work, logs, metrics, traces, memory."""
