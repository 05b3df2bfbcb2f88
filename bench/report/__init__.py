"""Stage: side-by-side, reproducible reports read back from MLflow: numbers/ computes, pages/
writes."""
