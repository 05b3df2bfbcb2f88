"""Stage: recording a run in MLflow. The store (opening, checking, querying, ending runs), the
run writer, the run's view in the MLflow UI (description, figures, tables, model), the links
and names the UI shows, and the environment contract between a sweep and its jobs.

MLflow's client settings for every command, before the first request: its HTTP client would
retry a dead server with backoff for minutes (7 retries, 120 s timeouts) in silence. Ours gives
each request one try and 10 seconds of silence, and bench.tracking.store.retrying waits for a
restarted or hung server itself, saying so at once, for up to tracking.busy_timeout_s. Artifact
transfers draw no progress bars in a sweep's log. MLflow's own "View run ... at" lines are
off: it writes them straight to stdout with the tracking URI's password in them; the
commands print their own links, credentials masked."""

import os

for _key, _value in (
    ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0"),
    ("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1"),
    ("MLFLOW_HTTP_REQUEST_TIMEOUT", "10"),
    ("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false"),
    ("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true"),
):
    os.environ.setdefault(_key, _value)
