"""Runnable examples of flowactors, and the data they run on (the taxi data of Flink's training)."""
