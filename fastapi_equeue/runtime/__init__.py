"""The worker runtime: services (heartbeat, completer, reconciler, rescuer, pruner, attempts,
producers) run in order by a supervisor; see ``runtime.Runtime``."""
