"""The console commands, one module each: train (`mnist-bench`), report, audit, speed, data and
ui (`make ui`'s link). The only layer that imports every other one."""
