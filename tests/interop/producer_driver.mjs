// Drives clients/typescript (compiled) with a real ioredis client, for tests/interop/test_typescript_producer.py.
// Usage: node producer_driver.mjs <compiled index.js> <redis URL: redis://… or unix:///path.sock?db=N> <calls JSON>
// calls: [{"fn": "enqueueIngestion" | "enqueueCorrections" | "enqueueJob", "args": [...], "options": {... "runAt": ms}}]; prints one JSON
// list with {"result": …} or {"error": "<class>: <message>"} per call.
import { pathToFileURL } from "node:url";
import Redis from "ioredis";

const [modulePath, redisUrl, callsJson] = process.argv.slice(2);
const producer = await import(pathToFileURL(modulePath).href);
const url = new URL(redisUrl);
const redis =
  url.protocol === "unix:"
    ? new Redis({ path: url.pathname, db: Number(url.searchParams.get("db") ?? 0) })
    : new Redis(redisUrl);
const results = [];
try {
  for (const call of JSON.parse(callsJson)) {
    const options = { ...(call.options ?? {}) };
    if (options.runAt !== undefined) options.runAt = new Date(options.runAt);
    try {
      results.push({ result: await producer[call.fn](redis, ...call.args, options) });
    } catch (error) {
      results.push({ error: `${error.name}: ${error.message}` });
    }
  }
} finally {
  redis.disconnect();
}
process.stdout.write(JSON.stringify(results));
