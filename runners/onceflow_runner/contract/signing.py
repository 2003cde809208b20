"""What a usable webhook signing secret is, per signature scheme (pure).

An empty signing secret is not "no signature": HMAC with an empty key is a key everyone knows, so
a gateway holding one would accept anything anyone signs. A Standard Webhooks secret that is not
`whsec_<base64>` cannot verify a single request, and is otherwise discovered only by senders
getting 401. Both are configuration errors the gateway (readiness), `onceflow validate`,
`onceflow local run` and the controller (Connector status) all report with the same words, so the
rule lives here, once.

The reason returned never contains the secret, only what is wrong with it: it is safe for logs and
status, and it is never sent to a webhook sender.
"""

from __future__ import annotations

import base64
import binascii
from typing import Final

__all__ = ["MIN_SECRET_BYTES", "SECRET_FIELD", "STANDARD_WEBHOOKS_PREFIX", "signing_key", "signing_secret_problem"]

#: Where a Connector names its signing secret (for messages that point at the field to fix).
SECRET_FIELD: Final = "spec.webhook.signature.secretRef"
STANDARD_WEBHOOKS_PREFIX: Final = "whsec_"
#: The shortest key accepted: below this an HMAC key can be guessed (Standard Webhooks uses 24-64).
MIN_SECRET_BYTES: Final = 8


def signing_key(scheme: str, secret: str) -> bytes:
    """The HMAC key a scheme uses: the decoded bytes of `whsec_<base64>`, else the secret's UTF-8.

    Raises:
        ValueError: a standard-webhooks secret that is not `whsec_<base64>`.
    """
    if scheme == "standard-webhooks":
        raw = secret.removeprefix(STANDARD_WEBHOOKS_PREFIX)
        try:
            return base64.b64decode(raw, validate=True)
        except binascii.Error:
            raise ValueError("is not whsec_<base64>") from None
    return secret.encode("utf-8", "surrogatepass")


def signing_secret_problem(scheme: str, secret: str) -> str | None:
    """Why `secret` cannot sign for `scheme` (a short phrase), or None when it is usable.

    The secret is taken as the gateway reads it: surrounding whitespace stripped.
    """
    text = secret.strip()
    if not text:
        return "the signing secret is empty"
    if scheme == "standard-webhooks":
        if not text.startswith(STANDARD_WEBHOOKS_PREFIX):
            return "the standard-webhooks signing secret does not start with whsec_"
        try:
            key = signing_key(scheme, text)
        except ValueError:
            return "the standard-webhooks signing secret is not whsec_ followed by base64"
    else:
        key = signing_key(scheme, text)
    if len(key) < MIN_SECRET_BYTES:
        return f"the signing secret is shorter than {MIN_SECRET_BYTES} bytes"
    return None
