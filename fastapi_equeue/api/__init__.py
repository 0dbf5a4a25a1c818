"""The FastAPI side: the ``/jobs`` router and the ``get_queue`` dependency."""
