"""Seeing what transactions do: traces, metrics, logs, timelines and alerts."""
