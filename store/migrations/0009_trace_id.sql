-- The OpenTelemetry trace id of a run's latest attempt (jobs/runtime/tracing.py), so an operator goes from
-- `run.py jobs show` to the trace. NULL when tracing is off (no OTEL_EXPORTER_OTLP_ENDPOINT) or the run never started.
ALTER TABLE runtime.job_runs ADD COLUMN trace_id TEXT;
