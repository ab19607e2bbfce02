"""Finding a legacy dataset: which of the three shapes it is, its files, years and checksums.

Shapes (see LEGACY.md): A = yearly combined Parquet (``<year>.parquet``, metadata and one vector
column per model); B = split layout (``data/metadata/metadata-YYYY.csv`` + ``latest.csv`` and
``data/embeddings/<alias>/YYYY.parquet`` with a ``manifest.json`` per alias); C = sharded pairs
(``metadata_<year>.parquet`` + ``embedding_<year>.parquet``). Nothing here writes to the source.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pyarrow.parquet as pq

from papersys.errors import PapersysError, UsageError

Shape = Literal["A", "B", "C"]
Role = Literal["combined", "metadata", "embeddings"]
HF_PREFIX = "hf://datasets/"
_YEAR = re.compile(r"(\d{4}|None|none|null)$")


@dataclass
class LegacyFile:
    path: Path
    rel: str  # path relative to the source root: how reports name the file
    role: Role
    year: str  # '2024', 'None' (file of null years) or 'latest'
    fmt: Literal["parquet", "csv"]
    alias: str | None = None  # legacy model alias of an embeddings file
    bytes: int = 0
    rows: int | None = None  # known up front for Parquet; counted while reading CSV
    sha256: str = ""


@dataclass
class Mapping:
    """A --mapping TOML: ``[columns] theirs = "ours"``, ``[models] alias = "name"|"id:dim"``."""

    columns: dict[str, str] = field(default_factory=dict)
    models: dict[str, str] = field(default_factory=dict)
    shape: Shape | None = None


@dataclass
class LegacySource:
    display: str
    root: Path
    shape: Shape
    files: list[LegacyFile]
    manifests: dict[str, dict] = field(default_factory=dict)  # shape B: alias → manifest.json
    manifest_problems: dict[str, str] = field(default_factory=dict)

    def of_role(self, *roles: Role) -> list[LegacyFile]:
        return [f for f in self.files if f.role in roles]


def load_mapping(path: Path | None) -> Mapping:
    if path is None:
        return Mapping()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"mapping file not found: {path}") from None
    except (tomllib.TOMLDecodeError, OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: cannot read the mapping TOML: {exc}") from None
    unknown = set(data) - {"columns", "models", "shape"}
    if unknown:
        raise UsageError(
            f"{path}: unknown key(s) {', '.join(sorted(unknown))}; "
            "use the tables columns (their name = our name) and models (alias = model), and shape"
        )
    columns, models = data.get("columns", {}), data.get("models", {})
    for section, values in (("columns", columns), ("models", models)):
        if not isinstance(values, dict) or not all(isinstance(v, str) for v in values.values()):
            raise UsageError(f"{path}: table {section} must map names to strings")
    shape = data.get("shape")
    if shape is not None and shape not in ("A", "B", "C"):
        raise UsageError(f'{path}: shape must be "A", "B" or "C", not {shape!r}')
    return Mapping(columns=dict(columns), models=dict(models), shape=shape)


def resolve_source(source: str) -> tuple[Path, str]:
    """A local folder, or ``hf://datasets/<repo>`` downloaded (read-only) into the HF cache."""
    if source.startswith("hf://"):
        if not source.startswith(HF_PREFIX) or len(source) == len(HF_PREFIX):
            raise UsageError(
                f"{source}: use hf://datasets/<owner>/<name> for a Hugging Face dataset"
            )
        repo = source[len(HF_PREFIX) :].strip("/")
        try:
            from huggingface_hub import snapshot_download

            local = snapshot_download(repo_id=repo, repo_type="dataset")
        except Exception as exc:  # offline, unknown repo, auth: all end the same way
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise PapersysError(
                f"cannot download {source} from the Hugging Face hub ({first}); check the network"
                " and the repo name, or download it and pass the local folder"
            ) from None
        return Path(local), source
    path = Path(source)
    if not path.is_dir():
        raise UsageError(f"legacy source not found or not a folder: {source}")
    return path, source


def _year_of(stem: str) -> str:
    match = _YEAR.search(stem)
    if not match:
        return stem
    year = match.group(1)
    return "None" if year.lower() in ("none", "null") else year


def _year_order(f: LegacyFile) -> tuple[int, str, str]:
    # Null-year files first, then years ascending, latest.csv last: later copies of an id win.
    if f.year == "None":
        rank = 0
    elif f.year.isdigit():
        rank = 1
    elif f.year == "latest":
        rank = 3
    else:
        rank = 2
    return rank, f.year, f.rel


def _file(root: Path, path: Path, role: Role, alias: str | None = None) -> LegacyFile:
    fmt: Literal["parquet", "csv"] = "csv" if path.suffix == ".csv" else "parquet"
    stem = path.stem
    year = "latest" if stem == "latest" else _year_of(stem)
    return LegacyFile(
        path=path,
        rel=path.relative_to(root).as_posix(),
        role=role,
        year=year,
        fmt=fmt,
        alias=alias,
        bytes=path.stat().st_size,
    )


def detect(root: Path, display: str, mapping: Mapping) -> LegacySource:
    """Work out the shape and list the files (years ordered so that later copies win)."""
    meta_dir = next(
        (d for d in (root / "data" / "metadata", root / "metadata") if d.is_dir()),
        None,
    )
    shape_b = meta_dir is not None and (
        any(meta_dir.glob("metadata-*.csv")) or (meta_dir / "latest.csv").is_file()
    )
    shape_c = any(root.rglob("metadata_*.parquet"))
    parquet_files = sorted(p for p in root.rglob("*.parquet") if p.is_file())
    shape: Shape | None = mapping.shape
    if shape is None:
        if shape_b:
            shape = "B"
        elif shape_c:
            shape = "C"
        elif parquet_files:
            shape = "A"
        else:
            raise UsageError(
                f"{display}: no legacy dataset found (expected <year>.parquet files, "
                "data/metadata/metadata-YYYY.csv, or metadata_<year>.parquet)"
            )
    files: list[LegacyFile] = []
    source = LegacySource(display=display, root=root, shape=shape, files=files)
    if shape == "A":
        files += [_file(root, p, "combined") for p in parquet_files]
    elif shape == "C":
        files += [_file(root, p, "metadata") for p in root.rglob("metadata_*.parquet")]
        files += [
            _file(root, p, "embeddings", "embedding") for p in root.rglob("embedding_*.parquet")
        ]
    else:
        if meta_dir is None:
            raise UsageError(f"{display}: shape B needs a data/metadata/ folder of CSV files")
        csvs = sorted(meta_dir.glob("metadata-*.csv"))
        if (meta_dir / "latest.csv").is_file():
            csvs.append(meta_dir / "latest.csv")
        files += [_file(root, p, "metadata") for p in csvs]
        emb_dir = meta_dir.parent / "embeddings"
        if emb_dir.is_dir():
            for alias_dir in sorted(p for p in emb_dir.iterdir() if p.is_dir()):
                alias = alias_dir.name
                files += [
                    _file(root, p, "embeddings", alias) for p in sorted(alias_dir.glob("*.parquet"))
                ]
                manifest = alias_dir / "manifest.json"
                if manifest.is_file():
                    try:
                        source.manifests[alias] = json.loads(manifest.read_text(encoding="utf-8"))
                    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                        source.manifest_problems[alias] = f"unreadable manifest.json: {exc}"
                else:
                    source.manifest_problems[alias] = "no manifest.json"
    if not files:
        raise UsageError(f"{display}: shape {shape} detected but no data files found")
    files.sort(key=lambda f: (f.role != "metadata" and f.role != "combined", *_year_order(f)))
    for f in files:
        if f.fmt == "parquet":
            try:
                f.rows = pq.ParquetFile(f.path).metadata.num_rows
            except Exception as exc:
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                raise PapersysError(
                    f"{f.path}: not a readable Parquet file ({first}); repair or remove it"
                ) from None
    return source


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()
