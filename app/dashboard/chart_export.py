"""Server-side SVG/PNG of a chart spec with vl-convert (the Vega-Lite compiler and renderer in Rust).

Optional: the ``charts`` extra installs ``vl-convert-python``. Without it the browser's own export
menu (vega-embed) still downloads SVG/PNG; the server routes answer 501 saying what to install.
"""

from __future__ import annotations

import importlib.util

from fastapi import HTTPException
from fastapi.responses import Response

from app.dashboard.charts import Chart

FORMATS = {"svg": "image/svg+xml", "png": "image/png"}
# Containers sized to their panel have no width on the server; exports use this one.
EXPORT_WIDTH = 720


def available() -> bool:
    return importlib.util.find_spec("vl_convert") is not None


def render(spec: dict, fmt: str) -> bytes:
    import vl_convert

    fixed = {**spec, "width": EXPORT_WIDTH if spec.get("width") == "container" else spec.get("width", EXPORT_WIDTH)}
    if fmt == "svg":
        return vl_convert.vegalite_to_svg(fixed).encode()
    return vl_convert.vegalite_to_png(fixed, scale=2)


def response(chart: Chart, fmt: str, filename: str) -> Response:
    if not available():
        raise HTTPException(501, detail="server-side chart export needs vl-convert-python (pip install 'priorprobe[charts]')")
    return Response(render(chart.spec, fmt), media_type=FORMATS[fmt], headers={"Content-Disposition": f'attachment; filename="{filename}.{fmt}"'})
