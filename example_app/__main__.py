"""``python -m example_app``: serve the example app and say where to look."""

import logging
import os

import uvicorn

HOST = os.environ.get("HOST", "127.0.0.1")
PORT = int(os.environ.get("PORT", "8000"))

if __name__ == "__main__":
    # Show the queue's job transitions (queued, processing, retrying, completed...) as they happen.
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    base = f"http://{HOST}:{PORT}"
    print(
        "fastapi_equeue example app, workers running in this process\n"
        f"  dashboard:  {base}/jobs/dashboard  (live: watch the jobs move)\n"
        f"  API docs:   {base}/docs  (POST /signup, then watch the welcome email's job)\n"
        f"  jobs API:   {base}/jobs  and  {base}/jobs/stats\n"
        f"  delivered:  {base}/outbox\n",
        flush=True,
    )
    uvicorn.run("example_app.main:app", host=HOST, port=PORT)
