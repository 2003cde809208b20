"""The operator's rule for an existing stream (pure): enforce only what it was told, never lower replicas otherwise."""

from __future__ import annotations

import pytest
from nats.js.api import StorageType, StreamConfig

from onceflow_operator.clients.topology import (
    MAX_CONSUMERS_PER_STREAM,
    TopologyError,
    TopologySettings,
    _corrected,
    _new_config,
)
from onceflow_runner.contract import subjects


def r3_stream() -> StreamConfig:
    config = _new_config(subjects.IN_STREAM, TopologySettings(replicas=3, max_bytes=10**9))
    assert config.num_replicas == 3
    return config


def test_an_operator_not_told_replicas_keeps_an_r3_stream_at_r3_and_its_limits() -> None:
    target, changes, refusal = _corrected(subjects.IN_STREAM, r3_stream(), TopologySettings())
    assert (target.num_replicas, target.max_bytes, changes, refusal) == (3, 10**9, [], "")


def test_only_an_explicit_replicas_setting_changes_replicas() -> None:
    target, changes, _ = _corrected(subjects.IN_STREAM, r3_stream(), TopologySettings(replicas=1))
    assert target.num_replicas == 1
    assert changes == ["num_replicas: 3 -> 1"]


def test_subjects_and_the_consumer_cap_are_always_put_right() -> None:
    config = r3_stream()
    config.subjects, config.max_consumers = ["elsewhere.>"], -1
    target, changes, _ = _corrected(subjects.IN_STREAM, config, TopologySettings())
    assert target.subjects == subjects.stream_subjects(subjects.IN_STREAM)
    assert target.max_consumers == MAX_CONSUMERS_PER_STREAM
    assert len(changes) == 2


def test_a_storage_change_is_refused_with_what_to_do() -> None:
    _, _, refusal = _corrected(subjects.IN_STREAM, r3_stream(), TopologySettings(storage="memory"))
    assert "cannot change a live stream's storage" in refusal
    assert _new_config(subjects.IN_STREAM, TopologySettings(storage="memory")).storage == StorageType.MEMORY


def test_settings_from_the_environment_and_one_line_errors() -> None:
    settings = TopologySettings.from_environment(
        {
            "ONCEFLOW_STREAM_REPLICAS": "3",
            "ONCEFLOW_STREAM_MAX_AGE": "ONCEFLOW_IN=14d, ONCEFLOW_AUDIT=60d",
            "ONCEFLOW_STREAM_DUPLICATE_WINDOW": "2m",
            "ONCEFLOW_STREAM_PLACEMENT_TAGS": "ssd, eu",
        }
    )
    assert settings.replicas == 3
    assert settings.duplicate_window == 120.0
    assert settings.max_age == {subjects.IN_STREAM: 14 * 86400.0, subjects.AUDIT_STREAM: 60 * 86400.0}
    assert settings.placement is not None
    assert settings.placement.tags == ["ssd", "eu"]
    assert TopologySettings.from_environment({}) == TopologySettings()
    with pytest.raises(TopologyError, match="ONCEFLOW_STREAM_REPLICAS=0 must be at least 1"):
        TopologySettings.from_environment({"ONCEFLOW_STREAM_REPLICAS": "0"})
    with pytest.raises(TopologyError, match="'NOPE' is not an Onceflow stream"):
        TopologySettings.from_environment({"ONCEFLOW_STREAM_MAX_AGE": "NOPE=1d"})


def test_settings_jetstream_would_refuse_are_refused_at_start_naming_the_variable() -> None:
    """Attack review: these passed the operator's start and failed later, in every stream ensure."""
    with pytest.raises(TopologyError, match="ONCEFLOW_STREAM_REPLICAS=6 must be at most 5"):
        TopologySettings.from_environment({"ONCEFLOW_STREAM_REPLICAS": "6"})
    with pytest.raises(TopologyError, match="ONCEFLOW_STREAM_DUPLICATE_WINDOW=2h is longer than ONCEFLOW_IN's max age"):
        TopologySettings.from_environment(
            {"ONCEFLOW_STREAM_DUPLICATE_WINDOW": "2h", "ONCEFLOW_STREAM_MAX_AGE": "ONCEFLOW_IN=1h"}
        )
    with pytest.raises(TopologyError, match="ONCEFLOW_STREAM_DUPLICATE_WINDOW=0s must be longer than 0"):
        TopologySettings.from_environment({"ONCEFLOW_STREAM_DUPLICATE_WINDOW": "0s"})
    assert TopologySettings.from_environment({"ONCEFLOW_STREAM_REPLICAS": "5"}).replicas == 5
