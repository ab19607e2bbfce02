"""Configuration: one TOML file validated by pydantic models that reject unknown keys.

Lookup order for the file: explicit path, then ``PAPERSYS_CONFIG``, then ``./papersys.toml``;
with none of them the defaults apply (a local lake under ``./lake`` and the packaged MiniLM
model as ``minilm``). ``PAPERSYS_LAKE_ROOT`` overrides ``[lake].root`` in every case.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from papersys.errors import ConfigError

MODEL_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
DEFAULT_CONFIG_FILE = "papersys.toml"
PACKAGED_MINILM = "sentence-transformers/all-MiniLM-L6-v2"


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class LakeConfig(StrictModel):
    root: Path = Field(Path("lake"), description="Lake directory: SQLite catalog and data files.")
    catalog: str | None = Field(
        None,
        description="DuckLake catalog after 'ducklake:'; default 'sqlite:<root>/catalog.sqlite'. "
        "For several machines: 'postgres:dbname=papersys host=... user=...'.",
    )
    data_path: str | None = Field(
        None, description="Where Parquet data files go; default '<root>/data/'. May be s3://..."
    )
    snapshot_retention_days: Annotated[int, Field(ge=0)] = 30

    @property
    def catalog_uri(self) -> str:
        return f"ducklake:{self.catalog or 'sqlite:' + str(self.root / 'catalog.sqlite')}"

    @property
    def data_uri(self) -> str:
        path = self.data_path or str(self.root / "data")
        return path if path.endswith("/") else path + "/"


class IngestionConfig(StrictModel):
    endpoint: str = "https://oaipmh.arxiv.org/oai"
    metadata_prefix: Literal["arXivRaw", "arXiv"] = "arXivRaw"
    sets: list[str] = Field(default_factory=list, description="OAI sets; empty = everything.")
    request_spacing: Annotated[float, Field(ge=0)] = 3.0
    max_retries: Annotated[int, Field(ge=0)] = 6
    backoff_base: Annotated[float, Field(ge=0)] = 2.0
    backoff_max: Annotated[float, Field(ge=0)] = 300.0
    timeout: Annotated[float, Field(gt=0)] = 120.0
    contact: str = Field("", description="Contact e-mail sent in the User-Agent (arXiv asks).")
    user_agent: str | None = None
    rss_endpoint: str = "https://rss.arxiv.org/atom"

    @property
    def effective_user_agent(self) -> str:
        if self.user_agent:
            return self.user_agent
        from papersys import __version__

        contact = f"; mailto:{self.contact}" if self.contact else ""
        return f"papersys/{__version__} (+https://github.com/papersys/papersys{contact})"


class EmbeddingModelConfig(StrictModel):
    model: str = Field(description="Hugging Face model id or local path.")
    backend: Literal["sentence_transformers", "vllm"] = "sentence_transformers"
    dim: Annotated[int, Field(gt=0)]
    max_length: Annotated[int, Field(gt=0)] = 512
    batch_size: Annotated[int, Field(gt=0)] = 64
    token_budget: Annotated[int | None, Field(gt=0)] = Field(
        None, description="Max padded tokens per batch; batches are cut by length, not count."
    )
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"
    prompt: str = ""
    normalize: bool = True


def _default_models() -> dict[str, EmbeddingModelConfig]:
    return {
        "minilm": EmbeddingModelConfig(
            model=PACKAGED_MINILM, dim=384, max_length=256, batch_size=64, token_budget=16384
        )
    }


class EmbeddingConfig(StrictModel):
    models: dict[str, EmbeddingModelConfig] = Field(default_factory=_default_models)
    chunk_size: Annotated[int, Field(gt=0)] = Field(
        2048, description="Gaps read and written per transaction."
    )

    @field_validator("models")
    @classmethod
    def _valid_names(
        cls, models: dict[str, EmbeddingModelConfig]
    ) -> dict[str, EmbeddingModelConfig]:
        for name in models:
            check_model_name(name)
        return models


class JobSchedule(StrictModel):
    cron: str = Field(description="Five-field cron expression, UTC.")
    enabled: bool = True
    retries: Annotated[int, Field(ge=0)] = 2
    retry_delay: Annotated[float, Field(ge=0)] = 60.0

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, cron: str) -> str:
        from papersys.scheduler import CronError, parse_cron

        try:
            parse_cron(cron)
        except CronError as exc:
            raise ValueError(str(exc)) from None
        return cron


def _default_jobs() -> dict[str, JobSchedule]:
    return {
        # arXiv publishes ~22:30 US Eastern Sunday-Thursday; harvest after that.
        "ingest": JobSchedule(cron="30 4 * * 1-5"),
        "transform": JobSchedule(cron="0 5 * * 1-5"),
        "embed": JobSchedule(cron="30 5 * * 1-5"),
        "embedding_backfill": JobSchedule(cron="0 12 * * 6"),
    }


class SchedulerConfig(StrictModel):
    jobs: dict[str, JobSchedule] = Field(default_factory=_default_jobs)
    metrics_port: Annotated[int | None, Field(ge=0, le=65535)] = None
    metrics_textfile: Path | None = None
    lease_seconds: Annotated[float, Field(gt=0)] = Field(
        900.0, description="A job's lease lasts this long unless renewed (a heartbeat renews it)."
    )


class Config(StrictModel):
    lake: LakeConfig = Field(default_factory=LakeConfig)
    ingestion: IngestionConfig = Field(default_factory=IngestionConfig)
    embedding: EmbeddingConfig = Field(default_factory=EmbeddingConfig)
    scheduler: SchedulerConfig = Field(default_factory=SchedulerConfig)
    source: Path | None = Field(None, exclude=True, description="File this was read from.")

    def model_config_for(self, name: str) -> EmbeddingModelConfig:
        check_model_name(name)
        try:
            return self.embedding.models[name]
        except KeyError:
            known = ", ".join(sorted(self.embedding.models)) or "none"
            raise ConfigError(
                f"unknown embedding model '{name}' (configured: {known}); "
                "add it under [embedding.models.<name>]"
            ) from None


def check_model_name(name: str) -> str:
    """Model names become table names (embeddings_<name>): only a safe subset is allowed."""
    if not MODEL_NAME_RE.fullmatch(name):
        raise ConfigError(
            f"invalid model name '{name}': use lowercase letters, digits and '_', "
            "starting with a letter (at most 63 characters)"
        )
    return name


def _format_validation_error(err: ValidationError, path: Path | None) -> str:
    where = str(path) if path else "configuration"
    first = err.errors()[0]
    loc = ".".join(str(p) for p in first["loc"]) or "(top level)"
    msg = first["msg"]
    if first["type"] == "extra_forbidden":
        msg = "unknown key"
    more = f" (+{len(err.errors()) - 1} more)" if len(err.errors()) > 1 else ""
    return f"{where}: {loc}: {msg}{more}"


def config_path(explicit: Path | str | None = None) -> Path | None:
    if explicit:
        return Path(explicit)
    env = os.environ.get("PAPERSYS_CONFIG")
    if env:
        return Path(env)
    local = Path(DEFAULT_CONFIG_FILE)
    return local if local.is_file() else None


def load_config(path: Path | str | None = None, overrides: dict[str, Any] | None = None) -> Config:
    """Read, validate and return the configuration; raise ConfigError with one clear line."""
    file = config_path(path)
    data: dict[str, Any] = {}
    if file is not None:
        try:
            data = tomllib.loads(file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {file}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{file}: invalid TOML: {exc}") from None
        except OSError as exc:
            raise ConfigError(f"cannot read config file {file}: {exc.strerror}") from None
    for dotted, value in (overrides or {}).items():
        node = data
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc, file)) from None
    except ConfigError as exc:
        raise ConfigError(f"{file or 'configuration'}: {exc}") from None
    root_env = os.environ.get("PAPERSYS_LAKE_ROOT")
    if root_env:
        config.lake.root = Path(root_env)
    elif file is not None and not config.lake.root.is_absolute():
        # A relative root in a file is relative to that file, not to the caller's cwd.
        config.lake.root = file.parent / config.lake.root
    config.source = file
    return config


def render_toml(config: Config) -> str:
    """The effective configuration as TOML (for `papersys config show`)."""
    data = config.model_dump(mode="json", exclude_none=True)
    lines: list[str] = []

    def emit(table: str, values: dict[str, Any]) -> None:
        scalars = {k: v for k, v in values.items() if not isinstance(v, dict)}
        tables = {k: v for k, v in values.items() if isinstance(v, dict)}
        if scalars or not tables:
            lines.append(f"[{table}]")
            lines.extend(f"{k} = {_toml_value(v)}" for k, v in scalars.items())
            lines.append("")
        for key, sub in tables.items():
            emit(f"{table}.{key}", sub)

    for section, values in data.items():
        emit(section, values)
    return "\n".join(lines).rstrip() + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    escaped = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'
