"""Import of legacy datasets (three shapes, see LEGACY.md) with a full defect report."""

from papersys.migration.legacy import DEFECT_KINDS, MigrationResult, migrate_legacy
from papersys.migration.report import load_report

__all__ = ["DEFECT_KINDS", "MigrationResult", "load_report", "migrate_legacy"]
