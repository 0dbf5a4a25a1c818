"""MkDocs hook: the REST reference page, generated from the router's OpenAPI at build time, so
that it cannot drift from the routes."""

from typing import Any

MARKER = "<!-- rest-routes -->"


def on_page_markdown(markdown: str, page: Any, **_: Any) -> str:
    """Fill the REST reference page's marker with a section per route."""
    if MARKER not in markdown:
        return markdown
    return markdown.replace(MARKER, _routes())


def _routes() -> str:
    from fastapi import FastAPI

    import fastapi_equeue as equeue

    app = FastAPI()
    app.include_router(equeue.router)
    spec = app.openapi()
    parts = []
    for path, operations in spec["paths"].items():
        for method, op in operations.items():
            parts.append(f"### `{method.upper()} {path}`\n")
            parts.append(f"{op.get('summary', '')}\n")
            if op.get("description"):
                parts.append(f"{op['description'].strip()}\n")
            params = op.get("parameters", [])
            if params:
                parts.append("| parameter | in | required | description |\n|---|---|---|---|")
                for p in params:
                    described = (p.get("description") or "").replace("\n", " ")
                    required = "yes" if p.get("required") else "no"
                    parts.append(f"| `{p['name']}` | {p['in']} | {required} | {described} |")
                parts.append("")
            responses = op.get("responses", {})
            parts.append("| status | meaning |\n|---|---|")
            for status, response in responses.items():
                meaning = (response.get("description") or "").replace("\n", " ")
                parts.append(f"| {status} | {meaning} |")
            parts.append("")
    return "\n".join(parts)
