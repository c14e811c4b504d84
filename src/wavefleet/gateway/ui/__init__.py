"""The gateway's live status page at /ui: backends and their states, per-model rates and latencies,
the last errors and device telemetry, behind the API's own keys (see docs/ui.md).

    board = StatusBoard(config=..., monitor=..., table=..., metrics=..., inflight=..., telemetry=None)
    app.add_routes(StatusPages(board=board, authenticator=authenticator).routes())

`board` builds the JSON the page polls; `pages` serves the page, its login form and its files,
which ship in `static/` inside the package (no CDN, nothing fetched from elsewhere).
"""
