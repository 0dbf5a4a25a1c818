"""The standalone worker: ``python -m fastapi_equeue.worker module:attribute``."""
