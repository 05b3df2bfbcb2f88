"""Stage: recording a run in MLflow. The store (opening, checking, querying, ending runs), the
run writer, the run's view in the MLflow UI (description, figures, tables, model), the links
and names the UI shows, and the environment contract between a sweep and its jobs.

MLflow's client settings for every command, before the first request: its HTTP client retries
a dead server with backoff for minutes (7 retries, 120 s timeouts), where a few seconds tell a
dead server from a busy one; and artifact transfers draw no progress bars in a sweep's log."""

import os

for _key, _value in (
    ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2"),
    ("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1"),
    ("MLFLOW_HTTP_REQUEST_TIMEOUT", "30"),
    ("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false"),
):
    os.environ.setdefault(_key, _value)
