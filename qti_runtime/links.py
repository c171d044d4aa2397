"""Personal tokens: what lets a participant (and only them) read and cancel their registration.

A registration id or request id travels in events and mails and is no secret. The personal token is
`HMAC-SHA256(QTI_LINK_SECRET, request id)`, 256 bits that nobody without the key can compute. Derived
rather than drawn at random so that it need not travel: registration, which checks it, and notification,
which puts it into the participant's mails as `{QTI_PORTAL_URL}/meine-anmeldung/{token}`, compute the same
token from the request id each of them already has. Registration keeps only its SHA-256 hash (to find the
registration a token belongs to); the token itself is stored nowhere.

Trade-off (docs/security.md): changing `QTI_LINK_SECRET` invalidates every link sent so far, and one token
cannot be revoked alone; cancelling or forgetting the registration is what ends its use.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from pydantic import SecretStr

_PURPOSE = b"qti-net personal token v1\x00"


def personal_token(link_secret: SecretStr, request_id: str) -> str:
    """The participant's token for the registration that answers `request_id` (43 URL-safe characters)."""
    digest = hmac.new(
        link_secret.get_secret_value().encode(), _PURPOSE + request_id.encode(), hashlib.sha256
    ).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def token_hash(token: str) -> str:
    """What registration stores to find a registration by its token (SHA-256, hex)."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def token_matches(link_secret: SecretStr, request_id: str, token: str) -> bool:
    """Whether `token` is the personal token of `request_id`, compared in constant time."""
    return hmac.compare_digest(
        personal_token(link_secret, request_id).encode(), token.encode("utf-8", "replace")
    )


def personal_link(portal_url: str, token: str) -> str:
    """The link printed in every mail about a registration."""
    return f"{portal_url.rstrip('/')}/meine-anmeldung/{token}"


_FEEDBACK_PURPOSE = b"qti-net feedback ticket v1\x00"


def feedback_token(link_secret: SecretStr, registration_id: str) -> str:
    """The one-time token of an attendee's feedback link: `HMAC-SHA256(key, purpose, registration id)`.

    Registration stores only its hash (without the registration id) and spends it with the first answer;
    notification derives it again for the invitation mail. 43 URL-safe characters."""
    digest = hmac.new(
        link_secret.get_secret_value().encode(), _FEEDBACK_PURPOSE + registration_id.encode(), hashlib.sha256
    ).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def feedback_link(portal_url: str, token: str) -> str:
    """The link of the feedback invitation mail."""
    return f"{portal_url.rstrip('/')}/rueckmeldung/{token}"


def certificate_link(portal_url: str, code: str) -> str:
    """Where anyone can check a certificate's code (printed on the PDF and in the mail)."""
    return f"{portal_url.rstrip('/')}/bescheinigung/{code}"
