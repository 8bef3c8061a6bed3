"""Payloads of client -> hub events, validated before any handler runs."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from realtime.base.errors import contains_nul

Id = Annotated[str, StringConstraints(min_length=1, max_length=128, strip_whitespace=True)]


class Payload(BaseModel):
    # Unknown fields are refused so that a typo is a VALIDATION_ERROR, not a silent no-op.
    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _no_nul(cls, data: Any) -> Any:
        # Postgres stores no NUL in text or JSONB: refuse it here, on every backend alike.
        if contains_nul(data):
            raise ValueError("strings may not contain NUL (\\u0000)")
        return data


class SessionJoin(Payload):
    session_id: Id
    since: dict[Id, Annotated[int, Field(ge=0)]] | None = Field(default=None, max_length=500)


class SessionLeave(Payload):
    session_id: Id


class AuthRefresh(Payload):
    token: Annotated[str, StringConstraints(min_length=1, max_length=16 * 1024)]


class PresencePing(Payload):
    session_id: Id
    state: Literal["active", "idle"]
    focused: bool | None = None
