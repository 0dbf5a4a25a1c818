"""A small FastAPI app that runs its jobs in-process on SQLite: the first thing to run."""
