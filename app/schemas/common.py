"""What every resource shares: the base of request bodies, error bodies, health."""

from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
)


class Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorBody(BaseModel):
    detail: Any = Field(
        description="What was wrong: a message, or for a 422 a list of {loc, msg, type}."
    )


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": description}
    for status, description in {
        400: "Malformed request",
        401: "Missing or unknown API key",
        403: "The key may not do this",
        404: "Not found",
        409: "Conflicts with the current state",
        413: "Request body too large",
        415: "A body that is not application/json",
        422: "A field breaks a rule; detail lists each as {loc, msg, type}",
        503: "Database unavailable or busy; retry after Retry-After seconds",
    }.items()
}


class Health(BaseModel):
    """A health check that passed; one that fails is a 503 like any other error."""

    status: Literal["ok"]
    detail: None = None
