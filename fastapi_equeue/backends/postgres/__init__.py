"""The PostgreSQL backend: SKIP LOCKED claims, LISTEN/NOTIFY wake-ups."""
