"""Regenerate the files derived from Orrery's Python sources: `.venv/bin/python -m clients.generate` (`--check` exits 1
when a file is stale instead of writing it; the tests run the same check).

- clients/typescript/src/registry.ts: every job's queue, dedupe key, argument JSON Schema (from its pydantic model)
  and TypeScript argument type, the Redis key prefixes and the enqueue Lua script Orrery itself runs.
- docs/contract.md: the blocks between `<!-- generated:NAME -->` and `<!-- /generated -->` (clients/contract.py).
- docs/jobs.md: the table of every job (block `jobs`), from jobs/catalog.py.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

from clients import contract
from jobs.catalog import JOBS
from jobs.runtime.arq_seam import expires_extra_ms
from jobs.runtime.keys import QUEUES
from jobs.runtime.queue import JOB_KEY_PREFIX, PUSH_SCRIPT, QUEUE_KEY_PREFIX
from jobs.runtime.registry import JobSpec

ROOT = Path(__file__).resolve().parent.parent
REGISTRY_TS = ROOT / "clients" / "typescript" / "src" / "registry.ts"
CONTRACT_MD = ROOT / "docs" / "contract.md"
JOBS_MD = ROOT / "docs" / "jobs.md"

SUPPORTED_KEYWORDS = {
    "type",
    "properties",
    "required",
    "additionalProperties",
    "anyOf",
    "enum",
    "default",
    "description",
    "title",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "format",
}
"""What clients/typescript/src/index.ts validates; a model needing more fails generation instead of going unchecked."""


def registered_jobs() -> list[JobSpec]:
    """The jobs Orrery ships (jobs/catalog.py)."""
    return JOBS.all()


def args_schema(spec: JobSpec) -> dict[str, Any]:
    schema: dict[str, Any] = spec.args_model.model_json_schema()
    _check_keywords(spec.name, schema)
    properties = schema.get("properties", {})
    for field in re.findall(r"\{(\w+)\}", spec.dedupe_key or ""):
        if properties.get(field, {}).get("type") != "string":
            raise ValueError(
                f"job {spec.name!r}: dedupe key field {field!r} must be a string for the TypeScript producer"
            )
    return schema


def _check_keywords(job: str, schema: dict[str, Any]) -> None:
    unknown = set(schema) - SUPPORTED_KEYWORDS
    if schema.get("format", "date-time") not in ("date-time", "date"):
        unknown.add(f"format={schema['format']}")
    if unknown:
        raise ValueError(f"job {job!r}: JSON Schema keywords {sorted(unknown)} are not validated by the TS producer")
    for sub in [*schema.get("properties", {}).values(), *schema.get("anyOf", [])]:
        _check_keywords(job, sub)


def _ts_type(schema: dict[str, Any]) -> str:
    if "anyOf" in schema:
        return " | ".join(_ts_type(branch) for branch in schema["anyOf"])
    if "enum" in schema:
        return " | ".join(json.dumps(value) for value in schema["enum"])
    return {"string": "string", "number": "number", "integer": "number", "boolean": "boolean", "null": "null"}[
        schema["type"]
    ]


def _ts_args_interface(spec: JobSpec, schema: dict[str, Any]) -> list[str]:
    lines = [f"  /** {spec.summary} */", f"  {json.dumps(spec.name)}: {{"]
    required = set(schema.get("required", []))
    for name, prop in schema.get("properties", {}).items():
        if prop.get("description"):
            lines.append(f"    /** {prop['description']} */")
        lines.append(f"    {name}{'' if name in required else '?'}: {_ts_type(prop)};")
    lines.append("  };")
    return lines


def render_registry_ts() -> str:
    specs = registered_jobs()
    schemas = {spec.name: args_schema(spec) for spec in specs}
    out = [
        "// Generated from Orrery's job registry by `.venv/bin/python -m clients.generate`: do not edit.",
        "// tests/interop/test_typescript_producer.py fails when it is stale.",
        "",
        "/** The subset of JSON Schema the job argument schemas use (pydantic's output, checked at generation). */",
        "export interface JsonSchema {",
        "  type?: string;",
        "  properties?: { [name: string]: JsonSchema };",
        "  required?: string[];",
        "  additionalProperties?: boolean;",
        "  anyOf?: JsonSchema[];",
        "  enum?: unknown[];",
        "  default?: unknown;",
        "  description?: string;",
        "  title?: string;",
        "  minimum?: number;",
        "  maximum?: number;",
        "  exclusiveMinimum?: number;",
        "  exclusiveMaximum?: number;",
        "  minLength?: number;",
        "  maxLength?: number;",
        '  /** "date-time" or "date": ISO 8601, as pydantic reads a datetime or a date. */',
        "  format?: string;",
        "}",
        "",
        f"export const JOB_KEY_PREFIX = {json.dumps(JOB_KEY_PREFIX)};",
        f"export const QUEUE_KEY_PREFIX = {json.dumps(QUEUE_KEY_PREFIX)};",
        "/** How long a job record outlives its run time (arq's expires_extra_ms). */",
        f"export const EXPIRES_EXTRA_MS = {expires_extra_ms};",
        f"export const QUEUES = {json.dumps(list(QUEUES))} as const;",
        "export type Queue = (typeof QUEUES)[number];",
        "",
        "/** jobs/runtime/queue.py's script: KEYS = job key, queue key;",
        " *  ARGV = record, ttl ms, score (run-at ms), job id. */",
        f"export const ENQUEUE_SCRIPT = {json.dumps(PUSH_SCRIPT)};",
        "",
        "/** Each job's arguments, as its pydantic model validates them. */",
        "export interface JobArgs {",
    ]
    for spec in specs:
        out.extend(_ts_args_interface(spec, schemas[spec.name]))
    out += [
        "}",
        "",
        "export type JobName = keyof JobArgs;",
        "",
        "export interface JobSpec {",
        "  /** The queue a job goes to unless the caller names another. */",
        "  queue: Queue;",
        "  /** The job id template (`ingest:{conversation_id}`): at most one queued or running job per id. */",
        "  dedupeKey: string | null;",
        "  argsSchema: JsonSchema;",
        "}",
        "",
        "export const JOBS: { readonly [N in JobName]: JobSpec } = {",
    ]
    for spec in specs:
        body = json.dumps({"queue": spec.queue, "dedupeKey": spec.dedupe_key, "argsSchema": schemas[spec.name]})
        out.append(f"  {json.dumps(spec.name)}: {body},")
    out += ["};", ""]
    return "\n".join(out)


def render_blocks(path: Path, current: str, blocks: dict[str, str]) -> str:
    """`current` (a page) with every generated block replaced by what the sources say now."""
    found: set[str] = set()

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in blocks:
            raise ValueError(f"{path.name}: unknown generated block {name!r}; known: {', '.join(blocks)}")
        found.add(name)
        return f"<!-- generated:{name} -->\n{blocks[name].strip()}\n<!-- /generated -->"

    rendered = re.sub(r"<!-- generated:([\w.-]+) -->\n.*?<!-- /generated -->", replace, current, flags=re.DOTALL)
    missing = sorted(set(blocks) - found)
    if missing:
        raise ValueError(f"{path.name}: add the generated blocks {missing}")
    return rendered


def _seconds(value: float) -> str:
    return f"{value:g} s" if value else "—"


def jobs_table() -> str:
    """docs/jobs.md's table of every job, from the catalog."""
    lines = [
        "| job | queue | timeout | tries | backoff | dedupe key | schedule (UTC) | what it does |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for spec in JOBS.all():
        key = f"`{spec.id_pattern}`" if spec.id_pattern else "—"
        cron = f"`{spec.cron}`" if spec.cron else "—"
        lines.append(
            f"| `{spec.name}` | {spec.queue} | {_seconds(spec.timeout_s)} | {spec.max_tries} | "
            f"{_seconds(spec.backoff_s)} | {key} | {cron} | {spec.summary} |"
        )
    return "\n".join(lines)


def outputs() -> dict[Path, str]:
    """Each generated file and the content it must have."""
    return {
        REGISTRY_TS: render_registry_ts(),
        CONTRACT_MD: render_blocks(CONTRACT_MD, CONTRACT_MD.read_text(encoding="utf-8"), contract.blocks()),
        JOBS_MD: render_blocks(JOBS_MD, JOBS_MD.read_text(encoding="utf-8"), {"jobs": jobs_table()}),
    }


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    for path, content in outputs().items():
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current != content:
            stale.append(path.relative_to(ROOT))
            if not check:
                path.write_text(content, encoding="utf-8")
    for path in stale:
        print(f"{'stale' if check else 'wrote'}: {path}")
    if check and stale:
        print("run `.venv/bin/python -m clients.generate` and commit the result", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
