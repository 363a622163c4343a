"""The interactive API docs at /docs, with Swagger UI's files served by the service itself.

FastAPI's default /docs loads Swagger UI from a CDN, so it is blank without internet (an
air-gapped deployment, a laptop on a plane). The files come from the swagger-ui-bundle package
instead (swagger-ui-bundle-v2: Swagger UI 5, which renders OpenAPI 3.1), mounted at
/docs-assets; ReDoc (CDN only) is not offered.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path

ASSETS = "/docs-assets"


def install_docs(app: FastAPI) -> None:
    app.mount(ASSETS, StaticFiles(directory=swagger_ui_path), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} API",
            swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS}/favicon-32x32.png",
        )
