// Runs Neo4j's Cypher front-end (@neo4j-cypher/language-support: the parser and the semantic analysis Neo4j's tools
// use, no server) over statements read from stdin as JSON:
//   {"schema": DbSchema without parameters,
//    "statements": [{"text": "...", "parameters": {"name": sample value, ...}, "versions": ["CYPHER 5", ...]}, ...]}
// Prints, per statement in order, [{"version": "CYPHER 5", "diagnostics": [{"severity": "error" | "warning" | ...,
// "message": "..."}]}, ...], one entry per version asked for. Each statement is linted with its own parameters only, so a `$name` it does not declare
// is reported.
import { lintCypherQuery } from "@neo4j-cypher/language-support";
import { readFileSync } from "node:fs";

const SEVERITY = { 1: "error", 2: "warning", 3: "information", 4: "hint" };
const request = JSON.parse(readFileSync(0, "utf8"));
const results = request.statements.map(({ text, parameters, versions }) =>
  versions.map((version) => {
    const schema = { ...request.schema, parameters, defaultLanguage: version };
    const { diagnostics } = lintCypherQuery(text, schema, { consoleCommandsEnabled: false });
    return {
      version,
      diagnostics: diagnostics.map((d) => ({ severity: SEVERITY[d.severity] ?? String(d.severity), message: d.message })),
    };
  }),
);
process.stdout.write(JSON.stringify(results));
