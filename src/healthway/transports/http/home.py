"""``/``: until the dashboard exists, a small page that says what this server is and where to go next."""

from __future__ import annotations

from html import escape

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from healthway import __version__

router = APIRouter(include_in_schema=False)

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Healthway {version}</title>
<style>body{{font:16px/1.5 system-ui,sans-serif;max-width:46rem;margin:3rem auto;padding:0 1rem;color:#1f2933}}
code{{background:#f0f4f8;padding:0 .25rem}}</style></head>
<body>
<h1>Healthway {version}</h1>
<p>This health data exchange gateway is running. The web dashboard is not built yet: manage it with the
<code>healthway</code> command line or the Platform API.</p>
<ul>
<li><a href="/openapi.json">/openapi.json</a>: every route of the HTTP API (<a href="/docs">browse it</a>)</li>
<li><a href="/healthz">/healthz</a> and <a href="/readyz">/readyz</a>: liveness and readiness</li>
<li><code>{token_url}</code>: the OAuth token endpoint (SMART Backend Services client assertions)</li>
</ul>
<h2>Next steps</h2>
<ol>
<li>Create a source: <code>healthway source create --env development --name 'My EHR'</code></li>
<li>Create an OAuth API key for it: <code>healthway key create-oauth --env development --generate --json
&gt; healthway-key.json</code></li>
<li>Send a test message: <code>python -m healthway.examples.smart_client healthway-key.json --url {url}</code></li>
</ol>
<p>The README's "Sending data" section explains client assertions, routing and delivery.</p>
</body></html>
"""


@router.get("/", response_class=HTMLResponse)
def home(request: Request) -> HTMLResponse:
    settings = request.app.state.healthway.settings
    page = _PAGE.format(version=__version__, url=escape(settings.public_url), token_url=escape(settings.token_url))
    return HTMLResponse(page)
