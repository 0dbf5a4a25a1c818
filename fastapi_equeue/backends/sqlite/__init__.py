"""The SQLite backend: BEGIN IMMEDIATE claims, in-process wake-ups plus polling."""
