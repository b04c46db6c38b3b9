"""The read-only web UI at `/ui`: static files (plain ES modules, no build step) under `static/`,
served by `runner.api.ui`; every datum comes from `/api/v1` with the viewer's own token."""
