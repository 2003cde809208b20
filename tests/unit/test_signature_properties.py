"""Property-based tests of the signature schemes: whatever arrives, `verify` accepts it or raises
`SignatureError`, never another exception; and a valid signature holds however the body was split
on the wire (the gateway joins the segments before verifying).

Issue 19: "any input ends as accepted or a clear 4xx" (a SignatureError is the gateway's 401).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Sequence

from aiohttp import StreamReader
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from onceflow_runner.gateway.intake import read_body
from onceflow_runner.gateway.signatures import SignatureConfig, SignatureError, sign, verify

NOW = 1_800_000_000
WHSEC = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SIGNED_HEADERS = [
    "X-Hub-Signature-256",
    "X-GitHub-Delivery",
    "X-Shopify-Hmac-Sha256",
    "X-Shopify-Webhook-Id",
    "Stripe-Signature",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "X-Signature",
    "X-Delivery-Id",
]
CONFIGS = st.sampled_from(
    [
        SignatureConfig("github"),
        SignatureConfig("shopify"),
        SignatureConfig("stripe"),
        SignatureConfig("standard-webhooks"),
        SignatureConfig("hmac", header="X-Signature"),
        SignatureConfig("hmac", header="X-Signature", algorithm="sha512", encoding="base64", prefix="sha512="),
        SignatureConfig("hmac", header="X-Signature", algorithm="md0"),
        SignatureConfig("hmac"),
        SignatureConfig("unknown"),
    ]
)
SECRETS = st.one_of(st.text(max_size=64), st.just(WHSEC), st.just(""), st.just("whsec_"), st.just(" \n"))
HEADER_VALUES = st.one_of(
    st.text(max_size=200),
    st.from_regex(r"\A(t=-?[0-9]{0,30},)?(v1=[0-9a-f]{0,64})?\Z"),
    st.from_regex(r"\A(v1,[A-Za-z0-9+/=]{0,60} ?){0,3}\Z"),
    st.from_regex(r"\A(sha256=)?[0-9a-f]{0,64}\Z"),
    st.integers(min_value=-(10**40), max_value=10**40).map(str),
    st.sampled_from(["9" * 400, "١٢٣٤٥٦٧٨٩٠", " 1800000000 ", "1e9", "v1,", "t=,v1="]),
)
HEADERS = st.dictionaries(st.one_of(st.sampled_from(SIGNED_HEADERS), st.text(max_size=20)), HEADER_VALUES, max_size=8)
BODIES = st.one_of(
    st.binary(max_size=512),
    st.just(b"[" * 5000 + b"]" * 5000),
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=10),
        lambda c: st.lists(c) | st.dictionaries(st.text(max_size=5), c),
    ).map(lambda v: repr(v).encode()),
)


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    config=CONFIGS,
    secret=SECRETS,
    headers=HEADERS,
    body=BODIES,
    now=st.floats(allow_nan=True, allow_infinity=True),
    signed=st.booleans(),
)
def test_any_request_is_accepted_or_refused_with_a_signature_error_only(
    config: SignatureConfig, secret: str, headers: dict[str, str], body: bytes, now: float, signed: bool
) -> None:
    if signed:  # a correctly signed request around hostile extra headers: drives past the signature check
        with contextlib.suppress(SignatureError, ValueError):
            headers = headers | sign(config, secret, body, delivery_id="d", timestamp=NOW)
        now = NOW
    outcome: object
    try:
        outcome = verify(config, secret, headers, body, now)
    except SignatureError as exc:
        outcome = exc
    assert isinstance(outcome, SignatureError) or (isinstance(outcome, str) and outcome)
    assert str(outcome)


def _split(body: bytes, cuts: Sequence[int]) -> list[bytes]:
    points = sorted({min(c, len(body)) for c in cuts})
    edges = [0, *points, len(body)]
    return [body[a:b] for a, b in itertools.pairwise(edges)]


class _Transport:
    """What aiohttp's StreamReader asks of its protocol: flow control, here a no-op."""

    _reading_paused = False
    connected = True

    def pause_reading(self, **_: object) -> None: ...

    def resume_reading(self, **_: object) -> None: ...


async def _gateway_reads(segments: list[bytes], limit: int) -> bytes:
    """The body as the gateway's `read_body` assembles it from segments arriving one by one."""
    stream = StreamReader(_Transport(), 2**16, loop=asyncio.get_running_loop())  # type: ignore[arg-type]

    async def arrive() -> None:
        for segment in segments:
            await asyncio.sleep(0)
            stream.feed_data(segment)
        stream.feed_eof()

    feeding = asyncio.create_task(arrive())
    body = await read_body(stream, limit=limit, deadline_seconds=5)
    await feeding
    return body


VALID = st.sampled_from(
    [
        (SignatureConfig("github"), "github-secret"),
        (SignatureConfig("shopify"), "shopify-secret"),
        (SignatureConfig("stripe"), "whsec_stripe-secret"),
        (SignatureConfig("standard-webhooks"), WHSEC),
        (SignatureConfig("hmac", header="X-Signature"), "hmac-secret"),
    ]
)


@settings(max_examples=300, deadline=None)
@given(
    pair=VALID,
    body=st.binary(min_size=1, max_size=4096),
    cuts=st.lists(st.integers(min_value=0, max_value=4096), max_size=12),
)
def test_a_valid_signature_holds_for_a_body_read_by_the_gateway_from_any_segmentation(
    pair: tuple[SignatureConfig, str], body: bytes, cuts: list[int]
) -> None:
    config, secret = pair
    headers = sign(config, secret, body, delivery_id="d-1", timestamp=NOW)
    received = asyncio.run(_gateway_reads(_split(body, cuts), limit=4096))
    assert received == body
    assert verify(config, secret, headers, received, NOW)
