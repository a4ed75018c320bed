// Runs Prisma's own schema engine (the wasm build from npm: no binary download) on a schema read from stdin.
// Usage: node prisma_engine.cjs <package> < schema.prisma   (package: @prisma/prisma-schema-wasm or an alias)
// Prints one JSON object: {"valid": true, "dmmf": {...}} or {"valid": false, "error": "<engine message>"}.
"use strict";
const engine = require(process.argv[2]);
const schema = require("node:fs").readFileSync(0, "utf8");
const params = JSON.stringify({ prismaSchema: [["schema.prisma", schema]], noColor: true });
let out;
try {
  engine.validate(params);
  out = { valid: true, dmmf: JSON.parse(engine.get_dmmf(params)) };
} catch (error) {
  const text = String(error && error.message ? error.message : error);
  let message = text;
  try {
    message = JSON.parse(text).message;
  } catch {
    // not the engine's JSON error: keep the text as it is
  }
  out = { valid: false, error: message };
}
process.stdout.write(JSON.stringify(out));
