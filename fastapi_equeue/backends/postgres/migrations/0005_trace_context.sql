-- OpenTelemetry: the W3C trace context (traceparent, tracestate) of the span that enqueued the
-- job, so that its attempts' spans link to it. NULL when the enqueuing process did not trace.

ALTER TABLE equeue_jobs ADD COLUMN trace_context jsonb;
