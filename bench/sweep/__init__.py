"""Stage: a sweep as a whole. The Hydra callback that opens and closes the sweep's parent run,
the launchers' view of how many jobs share the machine, the parent run's summary, and the audit
of what a sweep's grid is missing."""
