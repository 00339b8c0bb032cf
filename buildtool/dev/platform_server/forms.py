"""Reading request bodies: a JSON object, and the ``file`` field of a multipart/form-data upload, streamed."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from http import HTTPStatus
from typing import Any

import multipart  # type: ignore[import-untyped]  # the library ships no type information

from .refusals import Refusal

FORM_FIELD_LIMIT = 64 * 1024  # a form field other than `file` is read and dropped, up to this
FORM_MAX_PARTS = 16


def json_object(body: bytes) -> dict[str, Any]:
    """`body` as a JSON object; a refusal naming what is wrong otherwise."""
    try:
        value = json.loads(body)
    except (UnicodeDecodeError, ValueError, RecursionError):  # RecursionError: thousands of nested [
        raise Refusal(HTTPStatus.BAD_REQUEST, "the body is not valid JSON") from None
    if not isinstance(value, dict):
        raise Refusal(HTTPStatus.BAD_REQUEST, "the body must be a JSON object")
    return value


def finite_number(value: Any) -> float | None:
    """`value` as a float if it is a finite JSON number (not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:  # an integer such as 10**400
        return None
    return number if math.isfinite(number) else None


def excerpt(value: Any) -> str:
    """`value` for an error message, cut at 80 characters."""
    text = repr(value)
    return text if len(text) <= 80 else text[:80] + "..."


def form_boundary(content_type: str) -> str:
    """The boundary of a multipart/form-data Content-Type; refused if it is another type or a wild boundary."""
    kind, options = multipart.parse_options_header(content_type)
    boundary = options.get("boundary", "")
    if kind != "multipart/form-data" or not boundary:
        raise Refusal(HTTPStatus.BAD_REQUEST, "expected a multipart/form-data body with a boundary")
    if len(boundary) > 200 or not boundary.isascii():
        raise Refusal(HTTPStatus.BAD_REQUEST, "the multipart boundary must be at most 200 ASCII characters")
    return str(boundary)


def receive_file_field(chunks: Iterator[bytes], boundary: str, length: int, out: Any) -> int:
    """Write the form field ``file`` of a multipart/form-data body to `out` as it arrives; return its size.

    Other fields are read and dropped (up to a small size each); a second ``file`` field, a
    missing one, or a body that is not well-formed multipart is refused.
    """
    field: str | None = None
    received = False
    written = dropped = 0
    try:
        parser = multipart.PushMultipartParser(
            boundary, content_length=length, max_segment_count=FORM_MAX_PARTS, strict=True
        )
        for chunk in _then_end(chunks):
            for event in parser.parse(chunk):
                if isinstance(event, multipart.MultipartSegment):
                    field = event.name
                    if field == "file" and received:
                        raise Refusal(HTTPStatus.BAD_REQUEST, "more than one form field 'file'")
                    dropped = 0
                elif event is None:
                    received = received or field == "file"
                    field = None
                elif field == "file":
                    out.write(event)
                    written += len(event)
                else:
                    dropped += len(event)
                    if dropped > FORM_FIELD_LIMIT:
                        raise Refusal(
                            HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"form field {field!r} over {FORM_FIELD_LIMIT} bytes"
                        )
    except multipart.MultipartError as exc:
        raise Refusal(HTTPStatus.BAD_REQUEST, f"the multipart body is not well-formed: {exc}") from None
    if not received:
        raise Refusal(HTTPStatus.BAD_REQUEST, "no form field 'file' in the multipart body")
    return written


def _then_end(chunks: Iterator[bytes]) -> Iterator[bytes]:
    yield from chunks
    yield b""  # tells the parser the input ended: an incomplete body is an error, not a silent success
