"""Settings of the registration service (`QTI_*` environment variables)."""

from __future__ import annotations

from pydantic import Field

from services.registration.limits import RateLimitSettings


class RegistrationSettings(RateLimitSettings):
    # A request for an offering not (yet) known waits this long for catalogue's event.
    offering_wait_seconds: float = Field(default=30.0, ge=0)
