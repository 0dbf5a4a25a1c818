"""Fault-injection tests, and their harness: a throwaway PostgreSQL cluster, PgBouncer, and a
TCP proxy that blackholes, refuses and resets connections."""
