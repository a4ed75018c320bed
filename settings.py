"""All of Orrery's configuration in one pydantic-settings object.

Standard variables keep their usual names (DATABASE_URL, REDIS_URL, NEO4J_URI, OPENAI_API_KEY, …); Orrery's own
knobs are prefixed ORRERY_. Every value is validated once at start-up, so a typo fails with one line naming the
variable instead of a traceback deep inside a job.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

if TYPE_CHECKING:
    from core.recall import RecallWeights


def _env(name: str) -> AliasChoices:
    return AliasChoices(name, name.lower())


LocalPrecision = Literal["auto", "float32", "bfloat16"]
"""ORRERY_LOCAL_EMBEDDINGS_PRECISION: the local embedding model's number type (agents/embeddings.LocalEmbedder.load)."""


class Settings(BaseSettings):
    """Runtime configuration. Unset URLs mean "use the embedded stack" (see store/embedded.py)."""

    model_config = SettingsConfigDict(
        env_prefix="ORRERY_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        populate_by_name=True,
    )

    # --- backends --------------------------------------------------------------------------------------------
    database_url: str | None = Field(None, validation_alias=_env("DATABASE_URL"))
    redis_url: str | None = Field(None, validation_alias=_env("REDIS_URL"))
    neo4j_uri: str | None = Field(None, validation_alias=_env("NEO4J_URI"))
    neo4j_user: str = Field("neo4j", validation_alias=_env("NEO4J_USER"))
    neo4j_password: SecretStr | None = Field(None, validation_alias=_env("NEO4J_PASSWORD"))
    weaviate_url: str | None = Field(None, validation_alias=_env("WEAVIATE_URL"))
    weaviate_api_key: SecretStr | None = Field(None, validation_alias=_env("WEAVIATE_API_KEY"))
    data_dir: Path = Field(Path(".orrery"), description="Where the embedded Postgres and Redis keep their data.")

    # --- LLM ------------------------------------------------------------------------------------------------
    openai_api_key: SecretStr | None = Field(None, validation_alias=_env("OPENAI_API_KEY"))
    openai_base_url: str | None = Field(None, validation_alias=_env("OPENAI_BASE_URL"))
    llm: Literal["scripted"] | None = Field(
        None,
        description="`scripted`: answer from the shipped sample answers (the demo and the tests only); unset: the "
        "OpenAI-compatible endpoint of OPENAI_API_KEY / OPENAI_BASE_URL.",
    )
    ingestion_model: str = "gpt-4o-mini"
    llm_timeout_s: float = Field(60.0, gt=0)
    llm_max_retries: int = Field(3, ge=0, le=10)
    daily_token_budget: int = Field(2_000_000, ge=0, description="Per user per UTC day; 0 disables the budget.")
    llm_input_token_budget: int = Field(12_000, ge=500, description="Conversation tokens per LLM window.")

    # --- embeddings and vector store -------------------------------------------------------------------------
    embeddings_base_url: str | None = Field(
        None, description="An OpenAI-compatible embeddings endpoint; unset = the local all-MiniLM-L6-v2 model."
    )
    embeddings_api_key: SecretStr | None = Field(None, description="Defaults to OPENAI_API_KEY.")
    embeddings_model: str = "text-embedding-3-small"
    embeddings_dimension: int = Field(1536, ge=1, le=16_000, description="What the endpoint's model returns.")
    local_embeddings_precision: LocalPrecision = Field(
        "auto",
        description="The local model's number type: auto = bfloat16 on a CPU that computes it natively (half the "
        "time), else float32. Both write the same vectors to within 0.0001 of cosine.",
    )
    vector_ef_search: int = Field(200, ge=10, le=1000, description="pgvector HNSW candidates per query (recall).")
    sync_lag_alert_s: float = Field(
        300.0, gt=0, le=86400 * 7, description="A derived store whose oldest pending change is older is unhealthy."
    )

    # --- job runtime ----------------------------------------------------------------------------------------
    poll_delay_s: float = Field(0.01, gt=0, le=5)
    health_check_interval_s: float = Field(5.0, gt=0, le=300)
    job_lease_s: float = Field(15.0, ge=2, le=600, description="A killed worker's job is taken over after this.")
    shutdown_grace_s: float = Field(30.0, ge=0, le=3600)
    worker_concurrency: int = Field(10, ge=1, le=1000)
    worker_processes: int = Field(1, ge=1, le=64, description="Worker processes per `run.py worker` (one per core).")
    event_loop: Literal["auto", "asyncio", "uvloop"] = Field(
        "auto", description="The worker's event loop: uvloop where installed (auto), or asyncio's own."
    )
    ledger_retention_days: int = Field(30, ge=1)
    outage_tolerance_s: float = Field(
        300.0, gt=0, le=86400, description="A worker waits this long for Redis or Postgres to come back, then exits."
    )
    worker_restart_delay_s: float = Field(
        1.0, gt=0, le=60, description="First wait before `--processes` restarts a dead process; doubles up to 30 s."
    )
    metrics_port: int | None = Field(
        None, ge=0, le=65535, description="Serve Prometheus metrics on this port (/metrics); unset or 0: none."
    )
    otel_exporter_otlp_endpoint: str | None = Field(
        None,
        validation_alias=_env("OTEL_EXPORTER_OTLP_ENDPOINT"),
        description="An OTLP/HTTP collector: job traces are sent there (needs the `tracing` extra); unset: none.",
    )
    cron: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=dict,
        description='Schedule overrides by job name, e.g. {"sweep_timeouts": "*/2 * * * *", "prune_ledger": "off"}.',
    )

    # --- agents ---------------------------------------------------------------------------------------------
    conversation_timeout_minutes: float = Field(10.0, gt=0)
    ingestion_importance_threshold: float = Field(3.0, ge=0, le=10)
    card_importance_threshold: float = Field(6.0, ge=0, le=10)
    concept_similarity_threshold: float = Field(
        0.8, gt=0, le=1, description="Cosine similarity at which a new concept is taken for an existing one."
    )
    ingestion_max_memory_units: int = Field(50, ge=1, le=10_000, description="Per LLM answer; more is sent back.")
    ingestion_max_concepts: int = Field(100, ge=1, le=10_000, description="Per LLM answer; more is sent back.")
    ingestion_max_links: int = Field(300, ge=1, le=100_000, description="Relationships, and growth events, per answer.")
    ingestion_max_text_chars: int = Field(4000, ge=200, le=1_000_000, description="Per text of an answer (not names).")
    ingestion_earlier_memory_tokens: int = Field(
        250, ge=0, le=20_000, description="Earlier memories shown per ingestion call, nearest first (0: none)."
    )
    insight_model: str = "gpt-4o-mini"
    cycle_length_days: float = Field(7.0, gt=0, le=366, description="A growth cycle; the chain runs once it is over.")
    cycle_min_conversations: int = Field(1, ge=1, le=1000, description="Conversations with memory for an LLM call.")
    insight_importance_threshold: float = Field(3.0, ge=0, le=10, description="Conversations shown from this score.")
    insight_input_token_budget: int = Field(8000, ge=1000, le=200_000, description="Cycle material per insight call.")
    proactive_prompts_model: str = "gpt-4o-mini"
    proactive_prompts_max_pending: int = Field(5, ge=1, le=100, description="Pending prompts per user (the cap).")
    proactive_prompts_local_hour: int = Field(
        7, ge=0, le=23, description="The hour of the user's own morning (users.timezone) daily prompts come at."
    )
    proactive_prompt_expiry_days: float = Field(14.0, gt=0, le=365, description="Pending longer than this: expired.")
    cycle_report_model: str = "gpt-4o-mini"
    corrections_model: str = "gpt-4o-mini"
    corrections_batch_size: int = Field(
        50, ge=1, le=1000, description="A user's interactions decided in one LLM call at most; more wait for the next."
    )
    projection_max_memory_units: int = Field(2000, ge=1, le=100_000, description="Most important ones projected.")
    projection_refresh_delay_s: float = Field(
        60.0, ge=0, le=3600, description="A user's cosmos is refreshed this long after new vectors (a burst: once)."
    )
    recall_weight_similarity: float = Field(0.5, ge=0, le=100, description="Recall's weight of similarity.")
    recall_weight_recency: float = Field(0.3, ge=0, le=100, description="Recall's weight of recency.")
    recall_weight_importance: float = Field(0.2, ge=0, le=100, description="Recall's weight of importance.")

    # --- attachments (the media agent, jobs/media.py) ------------------------------------------------------
    media_vision_model: str = Field("gpt-4o-mini", description="A vision-capable chat model; describes images.")
    media_transcription_model: str = Field("whisper-1", description="Transcribes audio (/audio/transcriptions).")
    media_max_bytes: int = Field(
        25_000_000, ge=1, le=2_000_000_000, description="The largest attachment fetched; a larger one fails."
    )
    media_fetch_timeout_s: float = Field(60.0, gt=0, le=3600, description="The whole fetch of one attachment.")
    media_file_root: Path | None = Field(None, description="file:// URLs must lie under it; unset: <data dir>/media.")
    media_allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Hosts http(s) URLs may name (comma-separated); unset: any host with public addresses only.",
    )
    media_max_text_chars: int = Field(20_000, ge=100, le=1_000_000, description="Text kept of one attachment.")
    media_wait_s: float = Field(5.0, gt=0, le=3600, description="Ingestion's wait for an unread attachment, each time.")
    media_wait_tries: int = Field(
        24, ge=0, le=1000, description="Times ingestion waits for its attachments before it goes on without them."
    )

    # --- logging --------------------------------------------------------------------------------------------
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["auto", "json", "console"] = "auto"

    @field_validator("openai_api_key", "weaviate_api_key", "neo4j_password", "embeddings_api_key")
    @classmethod
    def _blank_secret_is_unset(cls, value: SecretStr | None) -> SecretStr | None:
        """`OPENAI_API_KEY=` (an empty line in .env) is no key, not a key the endpoint will refuse at the first call."""
        return value if value is not None and value.get_secret_value().strip() else None

    @field_validator("llm", mode="before")
    @classmethod
    def _llm_name(cls, value: Any) -> Any:
        return value.strip().lower() or None if isinstance(value, str) else value

    @field_validator("database_url")
    @classmethod
    def _postgres_scheme(cls, value: str | None) -> str | None:
        if value and not value.startswith(("postgres://", "postgresql://")):
            raise ValueError("must start with postgresql:// or postgres://")
        return value or None

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str | None) -> str | None:
        if value and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value or None

    @field_validator("neo4j_uri")
    @classmethod
    def _neo4j_scheme(cls, value: str | None) -> str | None:
        schemes = ("neo4j://", "neo4j+s://", "neo4j+ssc://", "bolt://", "bolt+s://", "bolt+ssc://")
        if value and not value.startswith(schemes):
            raise ValueError("must start with neo4j:// or bolt:// (optionally +s / +ssc)")
        return value or None

    @field_validator("weaviate_url", "openai_base_url", "embeddings_base_url", "otel_exporter_otlp_endpoint")
    @classmethod
    def _http_scheme(cls, value: str | None) -> str | None:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value or None

    @field_validator("media_allowed_hosts", mode="before")
    @classmethod
    def _host_list(cls, value: Any) -> Any:
        """ORRERY_MEDIA_ALLOWED_HOSTS is a comma-separated list of host names or addresses, compared in lowercase."""
        if isinstance(value, str):
            value = value.split(",")
        if isinstance(value, list | tuple | set | frozenset):
            return [str(host).strip().lower() for host in value if str(host).strip()]
        return value

    @field_validator("cron", mode="before")
    @classmethod
    def _cron_json(cls, value: Any) -> Any:
        """ORRERY_CRON is read as text and parsed here, so bad JSON is one line like any other bad setting."""
        if not isinstance(value, str):
            return value
        try:
            return json.loads(value) if value.strip() else {}
        except ValueError as exc:
            raise ValueError(f'not valid JSON ({exc}); expected e.g. {{"prune_ledger": "off"}}') from None

    @field_validator("cron")
    @classmethod
    def _cron_expressions(cls, value: dict[str, str]) -> dict[str, str]:
        """Every expression parses now; whether each name is a registered job is checked where the registry is
        known (jobs.runtime.scheduler.schedules), since settings sit below the jobs."""
        if not value:
            return value
        from core.cron import ScheduleError, check_expression  # pure parser; loaded only when ORRERY_CRON is set

        for name, expression in value.items():
            try:
                check_expression(expression)
            except ScheduleError as exc:
                raise ValueError(f"{name!r}: {exc}") from None
        return value

    @model_validator(mode="after")
    def _one_llm(self) -> Settings:
        if self.llm == "scripted" and (self.openai_api_key is not None or self.openai_base_url is not None):
            raise ValueError(
                "ORRERY_LLM=scripted and OPENAI_API_KEY / OPENAI_BASE_URL are both set: the scripted sample answers "
                "would ignore the endpoint; unset one of them"
            )
        return self

    @model_validator(mode="after")
    def _some_recall_weight(self) -> Settings:
        if self.recall_weight_similarity + self.recall_weight_recency + self.recall_weight_importance <= 0:
            raise ValueError(
                "ORRERY_RECALL_WEIGHT_SIMILARITY, ORRERY_RECALL_WEIGHT_RECENCY and ORRERY_RECALL_WEIGHT_IMPORTANCE are "
                "all 0: recall would rank nothing; give at least one a positive weight (defaults 0.5, 0.3, 0.2)"
            )
        return self

    @property
    def recall_weights(self) -> RecallWeights:
        """Recall's weights of similarity, recency and importance (core/recall.py)."""
        from core.recall import RecallWeights

        return RecallWeights(self.recall_weight_similarity, self.recall_weight_recency, self.recall_weight_importance)

    @property
    def resolved_data_dir(self) -> Path:
        return self.data_dir.expanduser().resolve()

    @property
    def resolved_media_root(self) -> Path:
        """Where file:// attachment URLs must point: ORRERY_MEDIA_FILE_ROOT, or the data dir's `media` folder."""
        return (self.media_file_root or self.data_dir / "media").expanduser().resolve()

    @property
    def llm_is_scripted(self) -> bool:
        """ORRERY_LLM=scripted: agents answer from the shipped sample answers. Only ever by name: a worker with no
        LLM configured refuses to start rather than give real users the sample user's answers. An endpoint given
        in code (`model_copy(update=…)`, which skips the validator refusing both) wins over it."""
        return self.llm == "scripted" and self.openai_api_key is None and self.openai_base_url is None

    @property
    def llm_configured(self) -> bool:
        """The scripted LLM asked for by name, or an endpoint (OPENAI_API_KEY and/or OPENAI_BASE_URL)."""
        return self.llm_is_scripted or self.openai_api_key is not None or self.openai_base_url is not None

    def llm_problem(self) -> str | None:
        """Why the agents' LLM cannot be used with this configuration, in one line; None when it can."""
        if self.llm_configured:
            return None
        return (
            "no LLM is configured: set OPENAI_API_KEY (and OPENAI_BASE_URL for another OpenAI-compatible endpoint, "
            "e.g. http://localhost:11434/v1), or ORRERY_LLM=scripted for the shipped sample answers (demo and tests "
            "only)"
        )


class SettingsError(Exception):
    """Configuration is invalid; the message names every bad variable."""


def _env_name(field: str) -> str:
    info = Settings.model_fields.get(field)
    if info is not None and isinstance(info.validation_alias, AliasChoices):
        first = info.validation_alias.choices[0]
        if isinstance(first, str):
            return first
    return f"ORRERY_{field.upper()}"


def _variable_set(loc: str) -> str:
    """The variable a value came from, by the name pydantic reports it under: a field's own name means its ORRERY_
    form (ORRERY_DATABASE_URL, read through the prefix), anything else is an alias (DATABASE_URL). Naming the first
    alias instead blamed DATABASE_URL for a bad ORRERY_DATABASE_URL and the reverse."""
    return f"ORRERY_{loc.upper()}" if loc in Settings.model_fields else loc.upper()


def format_validation_error(exc: ValidationError) -> str:
    """One line per bad setting: `NAME: problem (got 'value')`, NAME being the variable that was set."""
    lines = []
    for err in exc.errors():
        field = str(err["loc"][0]) if err["loc"] else "?"
        inside = "".join(f"[{part!r}]" for part in err["loc"][1:])  # a key of a JSON setting: ORRERY_CRON['x']
        got = err.get("input")
        shown = "" if isinstance(got, dict) or got is None else f" (got {str(got)[:60]!r})"
        if not err["loc"]:  # a rule over several variables names them itself
            lines.append(str(err["msg"]).removeprefix("Value error, "))
            continue
        lines.append(f"{_variable_set(field)}{inside}: {err['msg']}{shown}")
    return "; ".join(lines)


def load_settings(**overrides: object) -> Settings:
    """Build Settings from the environment, turning validation errors into a SettingsError."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise SettingsError(f"invalid configuration: {format_validation_error(exc)}") from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return load_settings()
