"""papersys: a DuckLake lakehouse of arXiv metadata and one embedding per paper per model."""

__version__ = "0.1.0"
