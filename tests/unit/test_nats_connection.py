"""How a process reaches a NATS cluster: its seed URLs, and waiting while JetStream has no leader."""

from __future__ import annotations

import logging

import pytest
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout
from nats.js.errors import BadRequestError, ServiceUnavailableError

from onceflow_runner.adapters import natsio


def test_a_comma_separated_nats_url_is_the_list_of_a_clusters_seeds() -> None:
    assert natsio.server_urls("nats://a:4222, nats://b:4222,nats://c:4222") == [
        "nats://a:4222",
        "nats://b:4222",
        "nats://c:4222",
    ]
    assert natsio.server_urls("tls://nats.nats.svc:4222") == ["tls://nats.nats.svc:4222"]


async def test_jetstream_without_a_leader_is_waited_out_with_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    failures: list[Exception] = [ServiceUnavailableError(), NatsTimeout(), NoRespondersError()]

    async def call() -> str:
        if failures:
            raise failures.pop(0)
        return "bound"

    with caplog.at_level(logging.WARNING, logger="onceflow.nats"):
        assert await natsio.when_available("stream ONCEFLOW_IN", call, first_wait=0.001) == "bound"
    (warning,) = [r for r in caplog.records if r.name == "onceflow.nats"]
    assert warning.waiting_for == "stream ONCEFLOW_IN"  # type: ignore[attr-defined]


async def test_a_refusal_is_not_waited_out() -> None:
    async def call() -> None:
        raise BadRequestError(code=400, err_code=10058, description="stream name already in use")

    with pytest.raises(BadRequestError):
        await natsio.when_available("the streams", call, first_wait=0.001)
