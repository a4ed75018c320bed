// Generated from Orrery's job registry by `.venv/bin/python -m clients.generate`: do not edit.
// tests/interop/test_typescript_producer.py fails when it is stale.

/** The subset of JSON Schema the job argument schemas use (pydantic's output, checked at generation). */
export interface JsonSchema {
  type?: string;
  properties?: { [name: string]: JsonSchema };
  required?: string[];
  additionalProperties?: boolean;
  anyOf?: JsonSchema[];
  enum?: unknown[];
  default?: unknown;
  description?: string;
  title?: string;
  minimum?: number;
  maximum?: number;
  exclusiveMinimum?: number;
  exclusiveMaximum?: number;
  minLength?: number;
  maxLength?: number;
}

export const JOB_KEY_PREFIX = "arq:job:";
export const QUEUE_KEY_PREFIX = "orrery:queue:";
/** How long a job record outlives its run time (arq's expires_extra_ms). */
export const EXPIRES_EXTRA_MS = 86400000;
export const QUEUES = ["interactive", "batch"] as const;
export type Queue = (typeof QUEUES)[number];

/** jobs/runtime/enqueue.py's script: KEYS = job key, queue key;
 *  ARGV = record, ttl ms, score (run-at ms), job id. */
export const ENQUEUE_SCRIPT = "\nlocal ttl = tonumber(ARGV[2])\nlocal score = tonumber(ARGV[3])\nif ttl == nil or ttl ~= ttl or ttl < 1 or ttl > 1e15 or ttl % 1 ~= 0 then\n    return redis.error_reply('ERR enqueue: ttl must be a whole number of milliseconds >= 1, not ' .. tostring(ARGV[2]))\nend\nif score == nil or score ~= score or score < 0 or score > 253402300799999 then\n    return redis.error_reply('ERR enqueue: score must be a unix time in ms (1970..9999), not ' .. tostring(ARGV[3]))\nend\nif redis.call('EXISTS', KEYS[1]) == 1 then return 0 end\nredis.call('SET', KEYS[1], ARGV[1], 'PX', ttl)\nredis.call('ZADD', KEYS[2], score, ARGV[4])\nreturn 1\n";

/** Each job's arguments, as its pydantic model validates them. */
export interface JobArgs {
  /** Diagnostics: sleep, optionally fail on purpose, echo the attempt (tests, bench, smoke checks). */
  "diag.echo": {
    /** Sleep this long before answering. */
    sleep_s?: number;
    fail_mode?: "none" | "transient" | "permanent" | "deferred";
    /** Fail only while attempt <= this (then succeed). */
    fail_attempts?: number;
    /** With fail_mode=deferred: run again this much later. */
    defer_s?: number;
    /** Count attempts in Redis under orrery:diag:{mark}:… */
    mark?: string | null;
  };
  /** Delete expired user sessions. */
  "expire_sessions": {
  };
  /** Turn an ended conversation into memory units, concepts, growth events, cards and the next greeting. */
  "ingest": {
    /** conversations.id to ingest */
    conversation_id: string;
    /** Re-derive a processed conversation, replacing what it produced */
    reprocess?: boolean;
  };
  /** Delete job ledger rows finished longer ago than the retention. */
  "prune_ledger": {
    /** Default: ORRERY_LEDGER_RETENTION_DAYS. */
    retention_days?: number | null;
  };
  /** End conversations silent past the timeout and enqueue ingestion of every ended one. */
  "sweep_timeouts": {
    /** Default: ORRERY_CONVERSATION_TIMEOUT_MINUTES. */
    timeout_minutes?: number | null;
    /** Conversations ended and enqueued per run at most. */
    limit?: number;
  };
}

export type JobName = keyof JobArgs;

export interface JobSpec {
  /** The queue a job goes to unless the caller names another. */
  queue: Queue;
  /** The job id template (`ingest:{conversation_id}`): at most one queued or running job per id. */
  dedupeKey: string | null;
  argsSchema: JsonSchema;
}

export const JOBS: { readonly [N in JobName]: JobSpec } = {
  "diag.echo": {"queue": "interactive", "dedupeKey": null, "argsSchema": {"additionalProperties": false, "properties": {"sleep_s": {"default": 0.0, "description": "Sleep this long before answering.", "maximum": 3600, "minimum": 0, "title": "Sleep S", "type": "number"}, "fail_mode": {"default": "none", "enum": ["none", "transient", "permanent", "deferred"], "title": "Fail Mode", "type": "string"}, "fail_attempts": {"default": 1000, "description": "Fail only while attempt <= this (then succeed).", "minimum": 0, "title": "Fail Attempts", "type": "integer"}, "defer_s": {"default": 1.0, "description": "With fail_mode=deferred: run again this much later.", "minimum": 0, "title": "Defer S", "type": "number"}, "mark": {"anyOf": [{"maxLength": 100, "type": "string"}, {"type": "null"}], "default": null, "description": "Count attempts in Redis under orrery:diag:{mark}:\u2026", "title": "Mark"}}, "title": "EchoArgs", "type": "object"}},
  "expire_sessions": {"queue": "batch", "dedupeKey": "expire_sessions", "argsSchema": {"additionalProperties": false, "properties": {}, "title": "ExpireSessionsArgs", "type": "object"}},
  "ingest": {"queue": "interactive", "dedupeKey": "ingest:{conversation_id}", "argsSchema": {"additionalProperties": false, "properties": {"conversation_id": {"description": "conversations.id to ingest", "maxLength": 200, "minLength": 1, "title": "Conversation Id", "type": "string"}, "reprocess": {"default": false, "description": "Re-derive a processed conversation, replacing what it produced", "title": "Reprocess", "type": "boolean"}}, "required": ["conversation_id"], "title": "IngestArgs", "type": "object"}},
  "prune_ledger": {"queue": "batch", "dedupeKey": "prune_ledger", "argsSchema": {"additionalProperties": false, "properties": {"retention_days": {"anyOf": [{"minimum": 1, "type": "integer"}, {"type": "null"}], "default": null, "description": "Default: ORRERY_LEDGER_RETENTION_DAYS.", "title": "Retention Days"}}, "title": "PruneLedgerArgs", "type": "object"}},
  "sweep_timeouts": {"queue": "interactive", "dedupeKey": "sweep_timeouts", "argsSchema": {"additionalProperties": false, "properties": {"timeout_minutes": {"anyOf": [{"exclusiveMinimum": 0, "type": "number"}, {"type": "null"}], "default": null, "description": "Default: ORRERY_CONVERSATION_TIMEOUT_MINUTES.", "title": "Timeout Minutes"}, "limit": {"default": 500, "description": "Conversations ended and enqueued per run at most.", "maximum": 10000, "minimum": 1, "title": "Limit", "type": "integer"}}, "title": "SweepTimeoutsArgs", "type": "object"}},
};
