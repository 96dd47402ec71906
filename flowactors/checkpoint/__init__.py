"""Checkpoints: the coordinator, the barrier, storage on disk and what a subtask snapshots."""
