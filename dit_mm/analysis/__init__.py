"""Measuring what the models cost and do: executed FLOPs, latency, host
syncs, the static peers, budget calibration and the task-model builder.
The cost models themselves are in :mod:`dit_mm.core`."""
