"""``python -m example_app``: serve the example app and say where to look."""

import logging
import os

import uvicorn

HOST = os.environ.get("HOST", "127.0.0.1")
PORT = int(os.environ.get("PORT", "8000"))

if __name__ == "__main__":
    # Show the queue's job transitions (queued, processing, completed, retrying...) in the console.
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    print(f"fastapi_equeue example: open http://{HOST}:{PORT}/docs and POST /signup")
    uvicorn.run("example_app.main:app", host=HOST, port=PORT)
