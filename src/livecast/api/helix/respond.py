"""JSON responses without a second validation pass (see schemas.py for why)."""

from __future__ import annotations

import json
from typing import Any

from fastapi.responses import Response


def json_response(doc: Any, status: int = 200) -> Response:
    body = json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()
    return Response(body, status_code=status, media_type="application/json")


def no_content() -> Response:
    return Response(status_code=204)
