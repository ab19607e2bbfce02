"""Small legacy datasets of each shape (LEGACY.md) with every known defect injected.

Each builder writes a folder and returns it; the expected counts next to each builder are
worked out by hand from the rows below (one comment per row says what it is), so the tests
check the migration against them, not against itself. Vector dimensions are small (8 and 12
stand in for 1024 and 1792) to keep the tests fast.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

JASPER_DIM = 8
CONAN_DIM = 12
C_DIM = 6
NAN = math.nan

# Models as given on the command line for the fixtures.
A_MODELS = [
    f"jasper_v1=NovaSearch/jasper_en_vision_language_v1:{JASPER_DIM}",
    f"conan_v1=TencentBAC/Conan-embedding-v1:{CONAN_DIM}",
]
B_MODELS = [
    "jasper=jasper_v1",
    f"jasper_v1=NovaSearch/jasper_en_vision_language_v1:{JASPER_DIM}",
    "conan=conan_v1",
    f"conan_v1=TencentBAC/Conan-embedding-v1:{CONAN_DIM}",
]
C_MODELS = ["embedding=legacy_c", f"legacy_c=example/model-c:{C_DIM}"]


def vec(seed: int, dim: int) -> list[float]:
    """A deterministic, finite, non-zero vector."""
    return [float(seed) + 0.5 + i / 100 for i in range(dim)]


def nan_vec(dim: int) -> list[float]:
    return [NAN] * dim


def zero_vec(dim: int) -> list[float]:
    return [0.0] * dim


def _a_table(rows: list[dict], fixed_size: bool, drop: tuple[str, ...] = ()) -> pa.Table:
    columns = {
        "id": pa.array([r["id"] for r in rows], pa.string()),
        "title": pa.array([r["title"] for r in rows], pa.string()),
        "authors": pa.array(
            [r.get("authors", ["Ada Lovelace"]) for r in rows], pa.list_(pa.string())
        ),
        "abstract": pa.array([r["abstract"] for r in rows], pa.string()),
        "date": pa.array([r.get("created") for r in rows], pa.string()),
        "categories": pa.array(
            [r.get("categories", ["cs.LG"]) for r in rows], pa.list_(pa.string())
        ),
        "created": pa.array([r.get("created") for r in rows], pa.string()),
        "updated": pa.array([r.get("updated") for r in rows], pa.string()),
        "license": pa.array([r.get("license") for r in rows], pa.string()),
    }
    for name, dim in (("jasper_v1", JASPER_DIM), ("conan_v1", CONAN_DIM)):
        values = [r.get(name) for r in rows]
        if fixed_size:
            flat = [x for v in values for x in (v if v is not None else [0.0] * dim)]
            arr = pa.FixedSizeListArray.from_arrays(pa.array(flat, pa.float32()), dim)
            if any(v is None for v in values):
                mask = pa.array([v is None for v in values])
                arr = pa.FixedSizeListArray.from_arrays(
                    pa.array(flat, pa.float32()), dim, mask=mask
                )
            columns[name] = arr
        else:
            columns[name] = pa.array(values, pa.list_(pa.float32()))
    for name in drop:
        columns.pop(name)
    return pa.table(columns)


def paper(arxiv_id: str, n: int, **extra: object) -> dict:
    row = {
        "id": arxiv_id,
        "title": f"Paper number {n}",
        "abstract": f"We study problem {n}.",
        "created": "2023-01-10",
        "jasper_v1": vec(n, JASPER_DIM),
        "conan_v1": vec(n, CONAN_DIM),
    }
    row.update(extra)
    return row


def build_shape_a(root: Path) -> Path:
    """Shape A: <year>.parquet, List(Float32) in 2023, FixedSizeList in 2024, plus None.parquet."""
    root.mkdir(parents=True, exist_ok=True)
    rows_2023 = [
        paper("2301.00001", 1),  # valid
        paper("2301.00002", 2, jasper_v1=nan_vec(JASPER_DIM)),  # jasper NaN (fixed in 2024)
        paper("2301.00003", 3, jasper_v1=zero_vec(JASPER_DIM)),  # jasper zero (NaN in 2024)
        paper("2301.00004", 4, jasper_v1=vec(4, 5)),  # jasper wrong dim (5 values)
        paper("hep-th/9901001", 5, created="1999-01-05"),  # old-style id, kept as is
        paper("2301.1", 6),  # damaged id → 2301.10000
        paper("2301.00001", 7, title="Paper number 1, revised"),  # duplicate in file; wins
        paper("2301.00020", 8),  # valid, and makes the next id ambiguous
        paper("2301.0002", 9),  # damaged: 2301.00020 exists undamaged → ambiguous
        paper("not-an-id", 10),  # invalid id
        paper("2301.00005", 11, created=None, conan_v1=None),  # null created, no conan vector
    ]
    rows_2024 = [
        paper("2301.00002", 12),  # across files; valid jasper replaces the NaN reject
        paper("2301.00003", 13, jasper_v1=nan_vec(JASPER_DIM)),  # across files, NaN again
        paper("2401.00001", 14, conan_v1=zero_vec(CONAN_DIM)),  # conan zero
        paper("2401.00002", 15, jasper_v1=[1.0, NAN, *vec(0, JASPER_DIM - 2)]),  # partial NaN
    ]
    rows_none = [paper("2402.00001", 16, created=None)]  # null-year file, null created
    pq.write_table(_a_table(rows_2023, fixed_size=False), root / "2023.parquet")
    pq.write_table(_a_table(rows_2024, fixed_size=True, drop=("license",)), root / "2024.parquet")
    pq.write_table(_a_table(rows_none, fixed_size=False), root / "None.parquet")
    return root


# Per (file, model or None, kind): the count the report must show.
A_EXPECTED_DEFECTS = {
    ("2023.parquet", "jasper_v1", "nan"): 1,
    ("2023.parquet", "jasper_v1", "zero"): 1,
    ("2023.parquet", "jasper_v1", "wrong_dim"): 1,
    ("2023.parquet", None, "repaired_id"): 1,
    ("2023.parquet", None, "duplicate_id_in_file"): 1,
    ("2023.parquet", None, "ambiguous_id"): 1,
    ("2023.parquet", None, "invalid_id"): 1,
    ("2023.parquet", None, "null_created"): 1,
    ("2023.parquet", "conan_v1", "null_vector"): 1,
    ("2024.parquet", None, "duplicate_id_across_files"): 2,
    ("2024.parquet", None, "missing_column"): 1,
    ("2024.parquet", "jasper_v1", "nan"): 2,
    ("2024.parquet", "conan_v1", "zero"): 1,
    ("None.parquet", None, "none_year_file"): 1,
    ("None.parquet", None, "null_created"): 1,
}
A_PAPERS = {
    "2301.00001",
    "2301.00002",
    "2301.00003",
    "2301.00004",
    "hep-th/9901001",
    "2301.10000",
    "2301.00020",
    "2301.00005",
    "2401.00001",
    "2401.00002",
    "2402.00001",
}
# jasper: valid for every paper except 2301.00003 (zero, then NaN), 2301.00004 (wrong dim),
# 2401.00002 (partial NaN); 2301.00002 is valid from 2024.
A_JASPER_REJECTS = {"2301.00003": "nan", "2301.00004": "wrong_dim", "2401.00002": "nan"}
A_CONAN_REJECTS = {"2401.00001": "zero"}
A_CONAN_ABSENT = {"2301.00005"}


def _write_csv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    import csv

    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


B_HEADER = [
    "paper_id",
    "title",
    "abstract",
    "categories",
    "primary_category",
    "authors",
    "published_at",
    "updated_at",
    "doi",
    "comment",
    "journal_ref",
    "license",
    "source",
]


def b_row(
    arxiv_id: str, n: int, published: str = "2023-02-01", header: list[str] = B_HEADER
) -> list[str]:
    values = {
        "paper_id": arxiv_id,
        "title": f"Split paper {n}",
        "abstract": f"An abstract\nover two lines {n}.",
        "categories": "cs.CL;cs.LG",
        "primary_category": "cs.CL",
        "authors": "Ada Lovelace;Alan Turing",
        "published_at": published,
        "updated_at": "",
        "doi": f"10.1000/{n}",
        "comment": "5 pages",
        "journal_ref": "",
        "license": "http://creativecommons.org/licenses/by/4.0/",
        "source": "oai",
    }
    return [values[h] for h in header]


def _b_embeddings(path: Path, rows: list[tuple[str, list[float] | None]], f16: bool) -> None:
    dtype = pa.float16() if f16 else pa.float32()
    table = pa.table(
        {
            "paper_id": pa.array([r[0] for r in rows], pa.string()),
            "embedding": pa.array([r[1] for r in rows], pa.list_(dtype)),
            "generated_at": pa.array(["2024-05-01T00:00:00Z"] * len(rows), pa.string()),
            "model_dim": pa.array([len(r[1] or []) for r in rows], pa.uint32()),
            "source": pa.array(["legacy"] * len(rows), pa.string()),
        }
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)


def build_shape_b(root: Path) -> Path:
    """Shape B: data/metadata/*.csv + data/embeddings/<alias>/YYYY.parquet + manifest.json."""
    meta = root / "data" / "metadata"
    _write_csv(
        meta / "metadata-2023.csv",
        B_HEADER,
        [
            b_row("2302.00001", 1),  # valid
            b_row("2302.00002", 2),  # jasper NaN
            b_row("2302.00003", 3),  # jasper zero
            b_row("2302.00004", 4, published=""),  # null published_at
            b_row("2302.00005", 5),  # jasper wrong dim
        ],
    )
    no_doi = [h for h in B_HEADER if h != "doi"]
    _write_csv(
        meta / "metadata-2024.csv",
        no_doi,  # missing column doi
        [
            b_row("2402.00001", 6, "2024-02-01", no_doi),  # valid (f16 vector)
            b_row("2402.00002", 7, "2024-02-01", no_doi),
            b_row("2402.00002", 8, "2024-02-01", no_doi),  # duplicate in file
        ],
    )
    _write_csv(meta / "latest.csv", B_HEADER, [b_row("2402.00001", 9, "2024-02-01")])  # across
    emb = root / "data" / "embeddings"
    _b_embeddings(
        emb / "jasper" / "2023.parquet",
        [
            ("2302.00001", vec(1, JASPER_DIM)),
            ("2302.00002", nan_vec(JASPER_DIM)),
            ("2302.00003", zero_vec(JASPER_DIM)),
            ("2302.00005", vec(5, 3)),  # wrong dim
            ("2302.0001", vec(6, JASPER_DIM)),  # damaged id → 2302.00010, no metadata: unknown
            ("2302.00001", vec(1, JASPER_DIM)),  # duplicate in file
        ],
        f16=False,
    )
    _b_embeddings(
        emb / "jasper" / "2024.parquet",
        [("2402.00001", vec(7, JASPER_DIM)), ("2402.00002", vec(8, JASPER_DIM))],
        f16=True,
    )
    (emb / "jasper" / "manifest.json").write_text(
        json.dumps(
            {
                "model": "NovaSearch/jasper_en_vision_language_v1",
                "dimension": JASPER_DIM,
                "total_rows": 9,  # the files hold 8
                "years": [2023, 2024],
                "files": ["2023.parquet", "2024.parquet"],
                "generated_at": "2024-05-01T00:00:00Z",
                "source": "legacy",
            }
        )
    )
    _b_embeddings(emb / "conan" / "2023.parquet", [("2302.00001", vec(1, CONAN_DIM))], f16=False)
    return root  # conan has no manifest.json


B_EXPECTED_DEFECTS = {
    ("data/metadata/metadata-2023.csv", None, "null_created"): 1,
    ("data/metadata/metadata-2024.csv", None, "missing_column"): 1,
    ("data/metadata/metadata-2024.csv", None, "duplicate_id_in_file"): 1,
    ("data/metadata/latest.csv", None, "duplicate_id_across_files"): 1,
    ("data/embeddings/jasper/2023.parquet", "jasper_v1", "nan"): 1,
    ("data/embeddings/jasper/2023.parquet", "jasper_v1", "zero"): 1,
    ("data/embeddings/jasper/2023.parquet", "jasper_v1", "wrong_dim"): 1,
    ("data/embeddings/jasper/2023.parquet", "jasper_v1", "repaired_id"): 1,
    ("data/embeddings/jasper/2023.parquet", "jasper_v1", "unknown_id"): 1,
    ("data/embeddings/jasper/2023.parquet", "jasper_v1", "duplicate_id_in_file"): 1,
    ("data/embeddings/jasper/2024.parquet", "jasper_v1", "f16_vectors"): 2,
    ("data/embeddings/jasper/manifest.json", "jasper_v1", "manifest_mismatch"): 1,
    ("data/embeddings/conan/manifest.json", "conan_v1", "missing_manifest"): 1,
}
B_PAPERS = {
    "2302.00001",
    "2302.00002",
    "2302.00003",
    "2302.00004",
    "2302.00005",
    "2402.00001",
    "2402.00002",
}
B_JASPER_VALID = {"2302.00001", "2402.00001", "2402.00002"}
B_JASPER_REJECTS = {"2302.00002": "nan", "2302.00003": "zero", "2302.00005": "wrong_dim"}


def build_shape_c(root: Path) -> Path:
    """Shape C: metadata_<year>.parquet + embedding_<year>.parquet pairs, and the None pair."""
    root.mkdir(parents=True, exist_ok=True)

    def meta(rows: list[tuple[str, str | None]]) -> pa.Table:
        from datetime import date

        return pa.table(
            {
                "id": pa.array([r[0] for r in rows], pa.string()),
                "title": pa.array([f"Sharded {r[0]}" for r in rows], pa.string()),
                "abstract": pa.array([f"Abstract of {r[0]}." for r in rows], pa.string()),
                "publish_date": pa.array(
                    [date.fromisoformat(r[1]) if r[1] else None for r in rows], pa.date32()
                ),
                "update_date": pa.array([None] * len(rows), pa.date32()),
                "categories": pa.array([["math.AG"]] * len(rows), pa.list_(pa.string())),
                "authors": pa.array(["Emmy Noether, David Hilbert"] * len(rows), pa.string()),
            }
        )

    def emb(rows: list[tuple[str, list[float]]]) -> pa.Table:
        flat = [x for _, v in rows for x in v]
        return pa.table(
            {
                "id": pa.array([r[0] for r in rows], pa.string()),
                "embedding": pa.FixedSizeListArray.from_arrays(pa.array(flat, pa.float32()), C_DIM),
            }
        )

    options = {"compression": "zstd", "row_group_size": 200_000}
    pq.write_table(
        meta(
            [
                ("2310.00100", "2023-10-02"),
                ("2310.00200", "2023-10-03"),
                ("0704.0001", "2007-04-02"),
            ]
        ),
        root / "metadata_2023.parquet",
        **options,
    )
    pq.write_table(
        emb(
            [
                ("2310.001", vec(1, C_DIM)),  # damaged → 2310.00100
                ("2310.00200", nan_vec(C_DIM)),  # NaN
                ("704.0001", vec(3, C_DIM)),  # leading zero lost → 0704.0001
                ("2310.00999", vec(4, C_DIM)),  # no metadata
                ("2310.00200", zero_vec(C_DIM)),  # duplicate in file, zero
            ]
        ),
        root / "embedding_2023.parquet",
        **options,
    )
    pq.write_table(meta([("2311.00001", None)]), root / "metadata_None.parquet", **options)
    pq.write_table(emb([("2311.00001", vec(5, C_DIM))]), root / "embedding_None.parquet", **options)
    return root


C_EXPECTED_DEFECTS = {
    ("metadata_None.parquet", None, "none_year_file"): 1,
    ("metadata_None.parquet", None, "null_created"): 1,
    ("embedding_None.parquet", "legacy_c", "none_year_file"): 1,
    ("embedding_2023.parquet", "legacy_c", "repaired_id"): 2,
    ("embedding_2023.parquet", "legacy_c", "nan"): 1,
    ("embedding_2023.parquet", "legacy_c", "zero"): 1,
    ("embedding_2023.parquet", "legacy_c", "unknown_id"): 1,
    ("embedding_2023.parquet", "legacy_c", "duplicate_id_in_file"): 1,
}
C_PAPERS = {"2310.00100", "2310.00200", "0704.0001", "2311.00001"}
C_VALID = {"2310.00100", "0704.0001", "2311.00001"}
C_REJECTS = {"2310.00200": "zero"}


def big_shape_a(
    path: Path,
    rows: int,
    dims: tuple[int, int] = (1024, 1792),
    row_group: int = 50_000,
    fixed_size: bool = True,
) -> Path:
    """A realistic year file for memory checks: ``rows`` papers, two vector columns (a third
    of them NaN, as in jasper_v1), written in row groups of ``row_group`` rows."""
    rng = np.random.default_rng(0)
    vector_type = {
        dim: pa.list_(pa.float32(), dim) if fixed_size else pa.list_(pa.float32()) for dim in dims
    }
    schema = pa.schema(
        [
            ("id", pa.string()),
            ("title", pa.string()),
            ("authors", pa.list_(pa.string())),
            ("abstract", pa.string()),
            ("date", pa.string()),
            ("categories", pa.list_(pa.string())),
            ("created", pa.string()),
            ("updated", pa.string()),
            ("license", pa.string()),
            ("jasper_v1", vector_type[dims[0]]),
            ("conan_v1", vector_type[dims[1]]),
        ]
    )
    abstract = "We propose a method for learning representations of scientific text. " * 12
    with pq.ParquetWriter(path, schema, compression="zstd") as writer:
        for start in range(0, rows, row_group):
            n = min(row_group, rows - start)
            cols: list[pa.Array] = [
                # 5-digit numbers: spread over months so that every id is a valid one.
                pa.array(
                    [f"{2401 + i // 90_000}.{i % 90_000 + 1:05d}" for i in range(start, start + n)]
                ),
                pa.array([f"A study of topic {i}" for i in range(start, start + n)]),
                pa.array([["Ada Lovelace", "Alan Turing"]] * n, pa.list_(pa.string())),
                pa.array([abstract] * n),
                pa.array(["2024-01-15"] * n),
                pa.array([["cs.LG", "cs.CL"]] * n, pa.list_(pa.string())),
                pa.array(["2024-01-15"] * n),
                pa.nulls(n, pa.string()),
                pa.nulls(n, pa.string()),
            ]
            for dim in dims:
                values = rng.standard_normal(n * dim, dtype=np.float32)
                values[: dim * (n // 3)] = np.nan
                flat = pa.array(values)
                if fixed_size:
                    cols.append(pa.FixedSizeListArray.from_arrays(flat, dim))
                else:
                    offsets = pa.array(np.arange(0, (n + 1) * dim, dim, dtype=np.int32))
                    cols.append(pa.ListArray.from_arrays(offsets, flat))
                del values, flat
            writer.write_table(pa.Table.from_arrays(cols, schema=schema), row_group_size=n)
            del cols
    return path
