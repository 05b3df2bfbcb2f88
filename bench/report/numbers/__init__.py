"""The report's numbers, computed from runs read back from MLflow: selection, statistics,
per-run rows, verdicts, tables and the reproducibility checklist. No words, no files."""
