"""`mnist-bench-speed`: how fast each implementation trains, against the machine's limit."""
