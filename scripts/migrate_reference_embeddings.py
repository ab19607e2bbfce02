"""Import a legacy reference-embedding dataset into the lake.

A thin wrapper around `papersys migrate legacy` (same arguments and options; the config comes
from $PAPERSYS_CONFIG or ./papersys.toml):

    python scripts/migrate_reference_embeddings.py SOURCE [--dry-run] [--model ALIAS=ID:DIM] ...
    python scripts/migrate_reference_embeddings.py --help
"""

from __future__ import annotations

import sys

from papersys.cli import app


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    app(["migrate", "legacy", *args], prog_name="migrate_reference_embeddings.py")


if __name__ == "__main__":
    main()
