// Enqueue Orrery jobs from TypeScript (the web app): the same record, dedupe check and Lua script as Orrery's own
// enqueue (jobs/runtime/enqueue.py). The job table (queues, dedupe keys, argument schemas) is generated from the Python
// registry into ./registry.ts, and arguments are validated against it before anything is written, so a bad field
// fails here with a message instead of becoming a dead letter in the worker.
import {
  ENQUEUE_SCRIPT,
  EXPIRES_EXTRA_MS,
  JOB_KEY_PREFIX,
  JOBS,
  QUEUE_KEY_PREFIX,
  QUEUES,
  type JobArgs,
  type JobName,
  type JsonSchema,
  type Queue,
} from "./registry.js";

export { JOBS, QUEUES, type JobArgs, type JobName, type Queue } from "./registry.js";

/** Web Crypto's randomUUID: a global in Node >= 19 and in every browser. */
declare const crypto: { randomUUID(): string };

/** What the producer needs of a Redis client; an ioredis `Redis` (or `Cluster`) instance fits as it is. */
export interface RedisLike {
  eval(script: string, numKeys: number, ...keysAndArgs: (string | number)[]): Promise<unknown>;
}

/** The value of `arq:job:{jobId}`: arq's job record, as JSON (never pickle). */
export interface JobRecord {
  /** The job name. */
  f: string;
  /** The named arguments: an object. */
  k: Record<string, unknown>;
  /** Positional arguments: always empty (Orrery's jobs take named arguments only). */
  a: [];
  /** Attempt override: an integer, or null (the runtime counts attempts itself). */
  t: number | null;
  /** Enqueue time: integer unix milliseconds. */
  et: number;
}

export interface EnqueueOptions {
  /** The job id; default: the job's dedupe key with the arguments filled in, else a random id. */
  jobId?: string;
  /** Another queue than the job's own. */
  queue?: Queue;
  /** Start no earlier than this many milliseconds from now. */
  delayMs?: number;
  /** Start no earlier than this time (give delayMs or runAt, not both). */
  runAt?: Date;
}

export interface EnqueueResult {
  jobId: string;
  name: JobName;
  queue: Queue;
  /** false: a job with this id is already queued or running, so nothing was written. */
  enqueued: boolean;
  /** When it may start, unix ms (the queue's score). */
  runAtMs: number;
  /** The record's `et`, unix ms. */
  enqueuedAtMs: number;
}

/** Arguments that do not fit the job; nothing was enqueued. The message names every bad field. */
export class JobArgumentsError extends Error {
  override name = "JobArgumentsError";
}

/** What pydantic accepts as a datetime in JSON: a date, "T" or a space, a time, an optional zone. */
const ISO_DATE_TIME = /^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?$/;

const ISO_DATE = /^\d{4}-\d{2}-\d{2}$/;

function typeOf(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "array";
  if (typeof value === "number") return Number.isInteger(value) ? "integer" : "number";
  return typeof value;
}

function fits(type: string, value: unknown): boolean {
  if (type === "number") return typeof value === "number" && Number.isFinite(value);
  if (type === "integer") return Number.isSafeInteger(value);
  if (type === "object") return typeOf(value) === "object";
  return typeOf(value) === type;
}

/** Problems of one value against one property schema (the keywords the generator allows), as "field: reason". */
function problems(schema: JsonSchema, value: unknown, path: string): string[] {
  if (schema.anyOf) {
    const branches = schema.anyOf.map((branch) => problems(branch, value, path));
    if (branches.some((found) => found.length === 0)) return [];
    return branches.length === 1 ? branches[0]! : [`${path}: ${branches.map((b) => b.join(", ")).join("; or ")}`];
  }
  if (schema.type !== undefined && !fits(schema.type, value)) {
    return [`${path}: must be ${schema.type === "integer" ? "an integer" : `a ${schema.type}`}, not ${typeOf(value)}`];
  }
  if (schema.enum && !schema.enum.includes(value)) {
    return [`${path}: must be one of ${schema.enum.map((v) => JSON.stringify(v)).join(", ")}`];
  }
  const found: string[] = [];
  if (typeof value === "string") {
    const length = [...value].length; // characters, as pydantic counts them
    if (schema.minLength !== undefined && length < schema.minLength) found.push(`${path}: at least ${schema.minLength} characters`);
    if (schema.maxLength !== undefined && length > schema.maxLength) found.push(`${path}: at most ${schema.maxLength} characters`);
    if (value.includes("\u0000")) found.push(`${path}: contains a NUL character (\\u0000), which cannot be stored`);
    if (schema.format === "date-time" && (!ISO_DATE_TIME.test(value) || Number.isNaN(Date.parse(value)))) {
      found.push(`${path}: must be an ISO 8601 date and time, e.g. 2026-11-19T00:00:00Z`);
    }
    if (schema.format === "date" && (!ISO_DATE.test(value) || Number.isNaN(Date.parse(value)))) {
      found.push(`${path}: must be an ISO 8601 date, e.g. 2026-11-19`);
    }
  }
  if (typeof value === "number") {
    if (schema.minimum !== undefined && value < schema.minimum) found.push(`${path}: must be >= ${schema.minimum}`);
    if (schema.maximum !== undefined && value > schema.maximum) found.push(`${path}: must be <= ${schema.maximum}`);
    if (schema.exclusiveMinimum !== undefined && value <= schema.exclusiveMinimum) found.push(`${path}: must be > ${schema.exclusiveMinimum}`);
    if (schema.exclusiveMaximum !== undefined && value >= schema.exclusiveMaximum) found.push(`${path}: must be < ${schema.exclusiveMaximum}`);
  }
  return found;
}

/** The job's arguments with defaults filled in, as Orrery's worker will see them; JobArgumentsError if they do not fit. */
export function validateArgs<N extends JobName>(name: N, args: JobArgs[N]): Record<string, unknown> {
  const spec = JOBS[name];
  if (spec === undefined) {
    throw new JobArgumentsError(`unknown job ${JSON.stringify(name)}; known jobs: ${Object.keys(JOBS).join(", ")}`);
  }
  if (typeOf(args) !== "object") throw new JobArgumentsError(`job '${name}': arguments must be an object`);
  const given = args as Record<string, unknown>;
  const properties = spec.argsSchema.properties ?? {};
  const found: string[] = [];
  for (const field of spec.argsSchema.required ?? []) {
    if (!(field in given) || given[field] === undefined) found.push(`${field}: required`);
  }
  const values: Record<string, unknown> = {};
  for (const [field, schema] of Object.entries(properties)) {
    if (given[field] !== undefined) {
      found.push(...problems(schema, given[field], field));
      values[field] = given[field];
    } else if ("default" in schema) {
      values[field] = schema.default;
    }
  }
  for (const field of Object.keys(given)) {
    if (!(field in properties)) found.push(`${field}: not an argument of this job`);
  }
  if (found.length > 0) throw new JobArgumentsError(`job '${name}': invalid arguments: ${found.join("; ")}`);
  return values;
}

/** The job id Orrery would give: the dedupe key with the arguments filled in, or null when the job has none. */
export function dedupeJobId(name: JobName, values: Record<string, unknown>): string | null {
  const template = JOBS[name].dedupeKey;
  return template === null ? null : template.replace(/\{(\w+)\}/g, (_, field: string) => String(values[field]));
}

/** The arq job record Orrery's worker reads. */
export function jobRecord(name: JobName, values: Record<string, unknown>, enqueuedAtMs: number): JobRecord {
  return { t: null, f: name, a: [], k: values, et: Math.trunc(enqueuedAtMs) };
}

/** Validate and enqueue one job, deduplicated by its id: one atomic Redis round trip (Orrery's own Lua script). */
export async function enqueueJob<N extends JobName>(
  redis: RedisLike,
  name: N,
  args: JobArgs[N],
  options: EnqueueOptions = {},
): Promise<EnqueueResult> {
  const values = validateArgs(name, args);
  const queue = options.queue ?? JOBS[name].queue;
  if (!(QUEUES as readonly string[]).includes(queue)) {
    throw new JobArgumentsError(`unknown queue ${JSON.stringify(queue)}; queues: ${QUEUES.join(", ")}`);
  }
  if (options.delayMs !== undefined && options.runAt !== undefined) {
    throw new JobArgumentsError("give either delayMs or runAt, not both");
  }
  const now = Date.now();
  const runAtMs = Math.trunc(options.runAt !== undefined ? options.runAt.getTime() : now + (options.delayMs ?? 0));
  if (!Number.isFinite(runAtMs) || runAtMs < 0) throw new JobArgumentsError(`job '${name}': invalid start time`);
  const jobId = options.jobId ?? dedupeJobId(name, values) ?? crypto.randomUUID().replace(/-/g, "");
  const ttlMs = Math.max(runAtMs - now, 0) + EXPIRES_EXTRA_MS;
  const record = JSON.stringify(jobRecord(name, values, now));
  const added = await redis.eval(
    ENQUEUE_SCRIPT, 2, JOB_KEY_PREFIX + jobId, QUEUE_KEY_PREFIX + queue, record, String(ttlMs), String(runAtMs), jobId,
  );
  return { jobId, name, queue, enqueued: Number(added) === 1, runAtMs, enqueuedAtMs: now };
}

/** Enqueue the ingestion of one conversation (job id `ingest:{conversationId}`: a second call while it is queued or
 * running enqueues nothing and returns enqueued=false). Setting the conversation's status to `ended` does the same
 * within a minute, through Orrery's timeout sweep. */
export function enqueueIngestion(
  redis: RedisLike,
  conversationId: string,
  options: EnqueueOptions & { reprocess?: boolean } = {},
): Promise<EnqueueResult> {
  const { reprocess, ...rest } = options;
  const args: JobArgs["ingest"] = reprocess === undefined ? { conversation_id: conversationId } : { conversation_id: conversationId, reprocess };
  return enqueueJob(redis, "ingest", args, rest);
}

/** Enqueue the application of a user's new corrections, card feedback and reflections (rows the web app wrote to
 * `interaction_logs`; docs/contract.md, "The user's corrections"), after inserting them: job id
 * `apply_corrections:{userId}`, so a second call while it is queued or running enqueues nothing. Without it Orrery's
 * `corrections_sweep` enqueues the same within a minute. */
export function enqueueCorrections(redis: RedisLike, userId: string, options: EnqueueOptions = {}): Promise<EnqueueResult> {
  return enqueueJob(redis, "apply_corrections", { user_id: userId }, options);
}
