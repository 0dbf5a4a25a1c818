"""``python -m fastapi_equeue.worker module:attribute``: see ``fastapi_equeue.worker.cli``."""

import sys

from fastapi_equeue.worker.cli import main

sys.exit(main())
