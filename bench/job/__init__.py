"""Stage: one job, from its checked settings to its trained network and metrics. Settings (the
config checked once into a `Job`), setup (data, initial weights, the network), the harness (the
timed training loop), and what is recorded about the host and the environment it ran in. Nothing
here imports MLflow: the harness reports to observers."""
