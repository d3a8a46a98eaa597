"""Wire types of the serving API: one source of truth for the server and the client.

The serving package fills this module in; the client parses responses into the same types.
"""

from __future__ import annotations

from pydantic import BaseModel


class ErrorDetail(BaseModel):
    """The body of every HTTP error: which kind, what went wrong, which request, which field."""

    type: str
    message: str
    request_id: str | None = None
    param: str | None = None


class ErrorBody(BaseModel):
    error: ErrorDetail
