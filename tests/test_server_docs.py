"""API docs that work offline: /docs and /redoc load only assets this server serves, and the schema shows the
response models."""

import re

from fastapi.testclient import TestClient

import lookalike
from lookalike.server.app import create_app


def test_docs_and_assets_are_served_locally(tmp_path):
    idx = lookalike.open(tmp_path, model="phash")
    with TestClient(create_app(idx, allowed_hosts=["testserver"])) as client:
        for page in ["/docs", "/redoc"]:
            html = client.get(page)
            assert html.status_code == 200
            urls = re.findall(r"""(?:src|href|url)\s*[=:]\s*['"]([^'"]+)['"]""", html.text)
            assert urls and not [u for u in urls if u.startswith(("http:", "https:", "//"))], urls
            for url in urls:
                if url.startswith("/docs-assets/"):
                    asset = client.get(url)
                    assert asset.status_code == 200 and len(asset.content) > 1000, url
        schema = client.get("/openapi.json").json()
    idx.close()
    ok = schema["paths"]["/api/search/text"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok == {"$ref": "#/components/schemas/SearchResults"}
    for name in ["SearchResults", "Info", "Dupes", "Clusters", "Comparison", "Recognition", "Health", "Job",
                 "Browse", "MovePlan"]:
        assert name in schema["components"]["schemas"], name
    assert "threshold_source" in schema["components"]["schemas"]["Dupes"]["properties"]
