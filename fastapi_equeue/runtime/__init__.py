"""The worker runtime: producer, executor, completer, heartbeat, rescuer and cancel watcher."""
