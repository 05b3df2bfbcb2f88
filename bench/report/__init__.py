"""Side-by-side, reproducible reports read back from MLflow."""
