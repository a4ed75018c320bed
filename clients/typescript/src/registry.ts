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
  /** "date-time" or "date": ISO 8601, as pydantic reads a datetime or a date. */
  format?: string;
}

export const JOB_KEY_PREFIX = "arq:job:";
export const QUEUE_KEY_PREFIX = "orrery:queue:";
/** How long a job record outlives its run time (arq's expires_extra_ms). */
export const EXPIRES_EXTRA_MS = 86400000;
export const QUEUES = ["interactive", "batch"] as const;
export type Queue = (typeof QUEUES)[number];

/** jobs/runtime/queue.py's script: KEYS = job key, queue key;
 *  ARGV = record, ttl ms, score (run-at ms), job id. */
export const ENQUEUE_SCRIPT = "\nlocal ttl = tonumber(ARGV[2])\nlocal score = tonumber(ARGV[3])\nif ttl == nil or ttl ~= ttl or ttl < 1 or ttl > 1e15 or ttl % 1 ~= 0 then\n    return redis.error_reply('ERR enqueue: ttl must be a whole number of milliseconds >= 1, not ' .. tostring(ARGV[2]))\nend\nif score == nil or score ~= score or score < 0 or score > 253402300799999 then\n    return redis.error_reply('ERR enqueue: score must be a unix time in ms (1970..9999), not ' .. tostring(ARGV[3]))\nend\nif redis.call('EXISTS', KEYS[1]) == 1 then return 0 end\nredis.call('SET', KEYS[1], ARGV[1], 'PX', ttl)\nredis.call('ZADD', KEYS[2], score, ARGV[4])\nreturn 1\n";

/** Each job's arguments, as its pydantic model validates them. */
export interface JobArgs {
  /** Turn a user's new corrections, card feedback and reflections (interaction_logs) into memory revisions, in one LLM call per batch. */
  "apply_corrections": {
    /** users.user_id whose new interactions to apply */
    user_id: string;
  };
  /** Enqueue apply_corrections for every user with new corrections, card feedback or reflections. */
  "corrections_sweep": {
    /** Users enqueued per run at most. */
    limit?: number;
  };
  /** Start the cycle chain (insight → proactive prompts → cycle report → projection) for every due user, */
  "cycle_dispatch": {
    /** Users whose cycle is started per run at most. */
    limit?: number;
  };
  /** Write a user's cycle report (narrative, growth per dimension vs the previous cycle, top concepts, highlights, counts) and its card, and start the next cycle; the chain's third step, then the projection. */
  "cycle_report": {
    /** users.user_id */
    user_id: string;
    /** The cycle, by its start; none = the user's current cycle */
    cycle_start?: string | null;
  };
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
  /** Close a user's growth cycle: memory profile, graph schema, insight artifacts, concept merges, communities. */
  "insight": {
    /** users.user_id */
    user_id: string;
    /** The cycle, by its start; none = the user's current cycle */
    cycle_start?: string | null;
  };
  /** Read one attachment into text: describe an image, transcribe audio, extract a document's text. */
  "media": {
    /** media_items.media_id to read */
    media_id: string;
    /** Read a processed or failed item again, replacing its reading */
    reprocess?: boolean;
  };
  /** Write a few proactive prompts for a user (deduplicated against their pending ones, capped, stale ones expired); the chain's second step, then cycle_report. */
  "proactive_prompts": {
    /** users.user_id */
    user_id: string;
    /** The cycle, by its start; none = the user's current cycle */
    cycle_start?: string | null;
    /** The daily schedule's run for this day on the user's clock (continues no chain) */
    daily?: string | null;
  };
  /** Enqueue the daily proactive_prompts run of every user whose local morning it is (ORRERY_PROACTIVE_PROMPTS_LOCAL_HOUR on their users.timezone clock), with new memory in the last day, whose cycle is not due and did not just start. Runs hourly; each user's run is keyed by their local day. */
  "proactive_prompts_daily": {
    /** Choose the users as at this moment instead of now (a test's clock, or a missed hour). */
    at?: string | null;
  };
  /** Lay out a user's memory units, concepts, artifacts and communities in 3D (PCA of their stored embeddings, aligned to the previous projection) with their edges: a user_graph_projections row. */
  "projection": {
    /** users.user_id */
    user_id: string;
    /** The cycle, by its start; none = the user's current cycle */
    cycle_start?: string | null;
  };
  /** Refresh a user's 3D projection from the vectors already stored (the projection's work, for the current cycle), after new entities. */
  "projection_refresh": {
    /** users.user_id */
    user_id: string;
  };
  /** Delete job ledger rows finished longer ago than the retention. */
  "prune_ledger": {
    /** Default: ORRERY_LEDGER_RETENTION_DAYS. */
    retention_days?: number | null;
  };
  /** Compare Postgres with the graph and vector stores (ids and content hashes) and repair drift through the outbox; remove what the stores hold of users Postgres no longer has. */
  "reconcile": {
    /** Only this user (default: all). */
    user_id?: string | null;
    /** Record outbox rows for what drifted (false: only report it). */
    repair?: boolean;
  };
  /** Recompute every user's concept salience (mentions, recency, connections) as of today, and sync the changed ones. */
  "salience_refresh": {
    /** Users read per page (each refreshed in its own transaction). */
    page?: number;
  };
  /** Enqueue the media job of every attachment still pending (or left processing by a lost run). */
  "sweep_media": {
    /** Media jobs enqueued per run at most. */
    limit?: number;
  };
  /** End conversations silent past the timeout and enqueue ingestion of every ended one. */
  "sweep_timeouts": {
    /** Default: ORRERY_CONVERSATION_TIMEOUT_MINUTES. */
    timeout_minutes?: number | null;
    /** Conversations ended and enqueued per run at most. */
    limit?: number;
  };
  /** Apply the outbox to one derived store (graph or vector): make it match Postgres for every changed entity. */
  "sync_stores": {
    /** Which derived store to bring up to date. */
    store: "graph" | "vector";
    /** Stop after this many rows (the rest waits). */
    max_rows?: number;
  };
  /** Enqueue sync_stores for every store with outbox rows still due. */
  "sync_sweep": {
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
  "apply_corrections": {"queue": "batch", "dedupeKey": "apply_corrections:{user_id}", "argsSchema": {"additionalProperties": false, "properties": {"user_id": {"description": "users.user_id whose new interactions to apply", "maxLength": 200, "minLength": 1, "title": "User Id", "type": "string"}}, "required": ["user_id"], "title": "ApplyCorrectionsArgs", "type": "object"}},
  "corrections_sweep": {"queue": "batch", "dedupeKey": "corrections_sweep", "argsSchema": {"additionalProperties": false, "properties": {"limit": {"default": 500, "description": "Users enqueued per run at most.", "maximum": 10000, "minimum": 1, "title": "Limit", "type": "integer"}}, "title": "CorrectionsSweepArgs", "type": "object"}},
  "cycle_dispatch": {"queue": "batch", "dedupeKey": "cycle_dispatch", "argsSchema": {"additionalProperties": false, "properties": {"limit": {"default": 1000, "description": "Users whose cycle is started per run at most.", "maximum": 100000, "minimum": 1, "title": "Limit", "type": "integer"}}, "title": "CycleDispatchArgs", "type": "object"}},
  "cycle_report": {"queue": "batch", "dedupeKey": null, "argsSchema": {"additionalProperties": false, "description": "The arguments of every step of the chain.", "properties": {"user_id": {"description": "users.user_id", "maxLength": 200, "minLength": 1, "title": "User Id", "type": "string"}, "cycle_start": {"anyOf": [{"format": "date-time", "type": "string"}, {"type": "null"}], "default": null, "description": "The cycle, by its start; none = the user's current cycle", "title": "Cycle Start"}}, "required": ["user_id"], "title": "CycleArgs", "type": "object"}},
  "diag.echo": {"queue": "interactive", "dedupeKey": null, "argsSchema": {"additionalProperties": false, "properties": {"sleep_s": {"default": 0.0, "description": "Sleep this long before answering.", "maximum": 3600, "minimum": 0, "title": "Sleep S", "type": "number"}, "fail_mode": {"default": "none", "enum": ["none", "transient", "permanent", "deferred"], "title": "Fail Mode", "type": "string"}, "fail_attempts": {"default": 1000, "description": "Fail only while attempt <= this (then succeed).", "minimum": 0, "title": "Fail Attempts", "type": "integer"}, "defer_s": {"default": 1.0, "description": "With fail_mode=deferred: run again this much later.", "minimum": 0, "title": "Defer S", "type": "number"}, "mark": {"anyOf": [{"maxLength": 100, "type": "string"}, {"type": "null"}], "default": null, "description": "Count attempts in Redis under orrery:diag:{mark}:\u2026", "title": "Mark"}}, "title": "EchoArgs", "type": "object"}},
  "expire_sessions": {"queue": "batch", "dedupeKey": "expire_sessions", "argsSchema": {"additionalProperties": false, "properties": {}, "title": "ExpireSessionsArgs", "type": "object"}},
  "ingest": {"queue": "interactive", "dedupeKey": "ingest:{conversation_id}", "argsSchema": {"additionalProperties": false, "properties": {"conversation_id": {"description": "conversations.id to ingest", "maxLength": 200, "minLength": 1, "title": "Conversation Id", "type": "string"}, "reprocess": {"default": false, "description": "Re-derive a processed conversation, replacing what it produced", "title": "Reprocess", "type": "boolean"}}, "required": ["conversation_id"], "title": "IngestArgs", "type": "object"}},
  "insight": {"queue": "batch", "dedupeKey": null, "argsSchema": {"additionalProperties": false, "description": "The arguments of every step of the chain.", "properties": {"user_id": {"description": "users.user_id", "maxLength": 200, "minLength": 1, "title": "User Id", "type": "string"}, "cycle_start": {"anyOf": [{"format": "date-time", "type": "string"}, {"type": "null"}], "default": null, "description": "The cycle, by its start; none = the user's current cycle", "title": "Cycle Start"}}, "required": ["user_id"], "title": "CycleArgs", "type": "object"}},
  "media": {"queue": "interactive", "dedupeKey": "media:{media_id}", "argsSchema": {"additionalProperties": false, "properties": {"media_id": {"description": "media_items.media_id to read", "maxLength": 200, "minLength": 1, "title": "Media Id", "type": "string"}, "reprocess": {"default": false, "description": "Read a processed or failed item again, replacing its reading", "title": "Reprocess", "type": "boolean"}}, "required": ["media_id"], "title": "MediaArgs", "type": "object"}},
  "proactive_prompts": {"queue": "batch", "dedupeKey": null, "argsSchema": {"additionalProperties": false, "properties": {"user_id": {"description": "users.user_id", "maxLength": 200, "minLength": 1, "title": "User Id", "type": "string"}, "cycle_start": {"anyOf": [{"format": "date-time", "type": "string"}, {"type": "null"}], "default": null, "description": "The cycle, by its start; none = the user's current cycle", "title": "Cycle Start"}, "daily": {"anyOf": [{"format": "date", "type": "string"}, {"type": "null"}], "default": null, "description": "The daily schedule's run for this day on the user's clock (continues no chain)", "title": "Daily"}}, "required": ["user_id"], "title": "ProactivePromptsArgs", "type": "object"}},
  "proactive_prompts_daily": {"queue": "batch", "dedupeKey": "proactive_prompts_daily", "argsSchema": {"additionalProperties": false, "properties": {"at": {"anyOf": [{"format": "date-time", "type": "string"}, {"type": "null"}], "default": null, "description": "Choose the users as at this moment instead of now (a test's clock, or a missed hour).", "title": "At"}}, "title": "DailyArgs", "type": "object"}},
  "projection": {"queue": "batch", "dedupeKey": null, "argsSchema": {"additionalProperties": false, "description": "The arguments of every step of the chain.", "properties": {"user_id": {"description": "users.user_id", "maxLength": 200, "minLength": 1, "title": "User Id", "type": "string"}, "cycle_start": {"anyOf": [{"format": "date-time", "type": "string"}, {"type": "null"}], "default": null, "description": "The cycle, by its start; none = the user's current cycle", "title": "Cycle Start"}}, "required": ["user_id"], "title": "CycleArgs", "type": "object"}},
  "projection_refresh": {"queue": "batch", "dedupeKey": "projection_refresh:{user_id}", "argsSchema": {"additionalProperties": false, "properties": {"user_id": {"description": "users.user_id", "maxLength": 200, "minLength": 1, "title": "User Id", "type": "string"}}, "required": ["user_id"], "title": "RefreshArgs", "type": "object"}},
  "prune_ledger": {"queue": "batch", "dedupeKey": "prune_ledger", "argsSchema": {"additionalProperties": false, "properties": {"retention_days": {"anyOf": [{"minimum": 1, "type": "integer"}, {"type": "null"}], "default": null, "description": "Default: ORRERY_LEDGER_RETENTION_DAYS.", "title": "Retention Days"}}, "title": "PruneLedgerArgs", "type": "object"}},
  "reconcile": {"queue": "batch", "dedupeKey": "reconcile", "argsSchema": {"additionalProperties": false, "properties": {"user_id": {"anyOf": [{"maxLength": 200, "minLength": 1, "type": "string"}, {"type": "null"}], "default": null, "description": "Only this user (default: all).", "title": "User Id"}, "repair": {"default": true, "description": "Record outbox rows for what drifted (false: only report it).", "title": "Repair", "type": "boolean"}}, "title": "ReconcileArgs", "type": "object"}},
  "salience_refresh": {"queue": "batch", "dedupeKey": "salience_refresh", "argsSchema": {"additionalProperties": false, "properties": {"page": {"default": 500, "description": "Users read per page (each refreshed in its own transaction).", "maximum": 100000, "minimum": 1, "title": "Page", "type": "integer"}}, "title": "SalienceRefreshArgs", "type": "object"}},
  "sweep_media": {"queue": "interactive", "dedupeKey": "sweep_media", "argsSchema": {"additionalProperties": false, "properties": {"limit": {"default": 500, "description": "Media jobs enqueued per run at most.", "maximum": 10000, "minimum": 1, "title": "Limit", "type": "integer"}}, "title": "SweepMediaArgs", "type": "object"}},
  "sweep_timeouts": {"queue": "interactive", "dedupeKey": "sweep_timeouts", "argsSchema": {"additionalProperties": false, "properties": {"timeout_minutes": {"anyOf": [{"exclusiveMinimum": 0, "type": "number"}, {"type": "null"}], "default": null, "description": "Default: ORRERY_CONVERSATION_TIMEOUT_MINUTES.", "title": "Timeout Minutes"}, "limit": {"default": 500, "description": "Conversations ended and enqueued per run at most.", "maximum": 10000, "minimum": 1, "title": "Limit", "type": "integer"}}, "title": "SweepTimeoutsArgs", "type": "object"}},
  "sync_stores": {"queue": "batch", "dedupeKey": "sync:{store}", "argsSchema": {"additionalProperties": false, "properties": {"store": {"description": "Which derived store to bring up to date.", "enum": ["graph", "vector"], "title": "Store", "type": "string"}, "max_rows": {"default": 100000, "description": "Stop after this many rows (the rest waits).", "maximum": 10000000, "minimum": 1, "title": "Max Rows", "type": "integer"}}, "required": ["store"], "title": "SyncArgs", "type": "object"}},
  "sync_sweep": {"queue": "batch", "dedupeKey": "sync_sweep", "argsSchema": {"additionalProperties": false, "properties": {}, "title": "SweepArgs", "type": "object"}},
};
