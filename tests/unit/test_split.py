"""Lane ownership by stream sequence: every record has exactly one owner, whatever the markers."""

from __future__ import annotations

import pytest

from onceflow_runner.contract.split import SplitTable, bucket, owns


def test_without_markers_the_main_lane_owns_everything() -> None:
    assert all(owns("main", seq, None) for seq in range(1, 500))
    assert not any(owns("canary", seq, None) for seq in range(1, 500))
    assert all(owns("main", seq, SplitTable()) for seq in range(1, 50))


@pytest.mark.parametrize("weight", [0, 1, 20, 50, 99, 100])
def test_exactly_one_lane_owns_each_record_and_the_canary_share_tracks_the_weight(weight: int) -> None:
    table = SplitTable(((10, weight),))
    sequences = range(11, 20_011)
    canary = [s for s in sequences if owns("canary", s, table)]
    main = [s for s in sequences if owns("main", s, table)]
    assert len(canary) + len(main) == len(sequences)
    assert not set(canary) & set(main)
    assert abs(len(canary) / len(sequences) * 100 - weight) < 1.5


def test_a_marker_governs_only_the_records_after_it() -> None:
    table = SplitTable(((100, 100), (200, 0)))
    assert owns("main", 100, table)  # the marker itself and everything before: main
    assert all(owns("canary", s, table) for s in range(101, 201))
    assert all(owns("main", s, table) for s in range(201, 300))


def test_bucket_is_stable_and_uniform() -> None:
    counts = [0] * 100
    for seq in range(1, 100_001):
        counts[bucket(seq)] += 1
    assert bucket(12345) == bucket(12345)
    assert min(counts) > 850
    assert max(counts) < 1150


def test_marker_payload_round_trips_with_the_markers_own_sequence() -> None:
    table = SplitTable(((5, 20),))
    again = SplitTable.from_marker(9, table.marker_payload(50))
    assert again.entries == ((5, 20), (9, 50))
    assert again.weight == 50
    assert again.last_sequence == 9


def test_compaction_keeps_the_marker_that_governs_unsettled_records() -> None:
    table = SplitTable(((10, 20), (20, 50), (30, 0)))
    assert table.compacted(5).entries == table.entries
    assert table.compacted(25).entries == ((20, 50), (30, 0))
    assert table.compacted(1000).entries == ((30, 0),)
    for floor in (5, 25, 1000):
        compacted = table.compacted(floor)
        assert all(owns("canary", s, table) == owns("canary", s, compacted) for s in range(floor + 1, floor + 200))
