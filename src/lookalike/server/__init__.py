"""REST API and web page: `lookalike serve` (FastAPI + a static page, no build step)."""
