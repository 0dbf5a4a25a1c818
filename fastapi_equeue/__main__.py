"""``python -m fastapi_equeue migrate``: apply or print the schema."""

import argparse
import asyncio
import sys
from collections.abc import Sequence

from fastapi_equeue.errors import EQueueError
from fastapi_equeue.queue import EQueue


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process's exit code."""
    parser = argparse.ArgumentParser(prog="python -m fastapi_equeue")
    commands = parser.add_subparsers(dest="command", required=True)
    migrate = commands.add_parser(
        "migrate", help="apply the schema to a database (or print it with --print-sql)"
    )
    migrate.add_argument(
        "--database-url",
        required=True,
        help="postgresql+asyncpg://... or sqlite+aiosqlite:///path.db",
    )
    migrate.add_argument(
        "--print-sql",
        action="store_true",
        help="print every migration as one SQL script instead of applying it",
    )
    args = parser.parse_args(argv)
    try:
        queue = EQueue(args.database_url, concurrency=0)
        if args.print_sql:
            sys.stdout.write(queue.migration_script())
            return 0
        applied = asyncio.run(queue.migrate())
    except EQueueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"applied: {', '.join(applied)}" if applied else "the schema is up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
