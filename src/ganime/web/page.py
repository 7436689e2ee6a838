"""The page routes: `/` (the page, with the model's title), `/docs` (an API reference with no script) and
`/browser`, which leads to the in-browser page mounted at /browser/."""

from __future__ import annotations

import html
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from ganime.web.site import fill_page

router = APIRouter(include_in_schema=False)


@router.get("/", response_class=HTMLResponse)
@router.get("/static/index.html", response_class=HTMLResponse)  # the same page, never the raw template
async def index(request: Request) -> HTMLResponse:
    # the one page (web/static/index.html) with the server's API as its back end
    html = fill_page(request.app.state.page_html, "server", "/static/")
    return HTMLResponse(html, headers={"Cache-Control": "no-cache"})


@router.get("/browser")
async def browser_page() -> RedirectResponse:
    return RedirectResponse("/browser/")


@router.get("/docs", response_class=HTMLResponse)
async def docs(request: Request) -> HTMLResponse:
    """Every route with its parameters, from the OpenAPI schema, as plain HTML (works offline, no script)."""
    schema = request.app.openapi()
    rows = []
    for path, ops in schema.get("paths", {}).items():
        for method, op in ops.items():
            params = [_param(p) for p in op.get("parameters", [])]
            if "requestBody" in op:
                params.append('<li>JSON body: see <a href="/openapi.json">/openapi.json</a></li>')
            rows.append(
                f'<section class="card"><h2><code>{method.upper()} {html.escape(path)}</code></h2>'
                f"<p>{html.escape(op.get('description') or op.get('summary') or '')}</p>"
                + (f"<ul>{''.join(params)}</ul>" if params else "")
                + "</section>"
            )
    body = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>API · {html.escape(schema['info']['title'])}</title>"
        '<link rel="icon" href="data:,"><link rel="stylesheet" href="/static/style.css"></head><body>'
        f"<header><h1>{html.escape(schema['info']['title'])} API {html.escape(schema['info']['version'])}</h1>"
        '<p class="sub">The machine-readable schema is <a href="/openapi.json">/openapi.json</a>; '
        '<a href="/">back to the page</a>.</p></header><main>' + "".join(rows) + "</main></body></html>"
    )
    return HTMLResponse(body, headers={"Cache-Control": "no-cache"})


def _param(p: dict[str, Any]) -> str:
    s = p.get("schema", {})
    for option in s.get("anyOf", []):  # an optional parameter: its bounds are on the non-null option
        s = {**option, **{k: v for k, v in s.items() if k != "anyOf"}}
    bounds = [f"{k} {s[k]}" for k in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum") if k in s]
    need = "required" if p.get("required") else f"default {s.get('default', 'none')}"
    what = html.escape("; ".join(x for x in (p.get("description"), ", ".join(bounds)) if x))
    return f"<li><code>{html.escape(p['name'])}</code> ({p.get('in')}, {need}) {what}</li>"
