"""Helpers without a stage of their own: the strict YAML reader, atomic files, child processes, progress events."""
