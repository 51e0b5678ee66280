"""The state document: permissions, shape rules and a merge that converges in any order."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from collective_sync.engine.state import StateDoc, check_path, nest
from collective_sync.protocol.errors import ProtocolError


def test_leader_roots_and_own_area() -> None:
    check_path("geometry.R", "p1", is_leader=True)
    check_path("participants.p1.bio.hr", "p1", is_leader=False)
    for path, writer, leader, code in [
        ("geometry.R", "p1", False, "not_leader"),
        ("participants.p2.hr", "p1", True, "forbidden"),
        ("participants.p1", "p1", False, "invalid_path"),
        ("other.x", "p1", True, "invalid_path"),
        ("geometry..R", "p1", True, "invalid_path"),
        ("geometry.a b", "p1", True, "invalid_path"),
        (".".join(["geometry"] * 9), "p1", True, "invalid_path"),
    ]:
        with pytest.raises(ProtocolError) as err:
            check_path(path, writer, leader)
        assert err.value.code == code, path


def test_last_writer_wins_and_ties() -> None:
    doc = StateDoc()
    assert doc.apply({"geometry.R": 1}, at=10.0, writer="pa") == {"geometry.R": 1}
    assert doc.apply({"geometry.R": 2}, at=9.0, writer="pz") == {}  # older loses
    assert doc.apply({"geometry.R": 3}, at=10.0, writer="pb") == {"geometry.R": 3}  # tie: larger id
    assert doc.apply({"geometry.R": 4}, at=10.0, writer="pa") == {}  # tie: smaller id loses
    assert doc.apply({"geometry.R": 5}, at=10.0, writer="pb") == {"geometry.R": 5}  # same writer, later
    assert doc.values == {"geometry.R": 5}
    assert doc.version == 3  # only accepted updates count


def test_delete_keeps_stamp_so_old_writes_cannot_resurrect() -> None:
    doc = StateDoc()
    doc.apply({"geometry.R": 1}, at=1.0, writer="p")
    doc.apply({"geometry.R": None}, at=2.0, writer="p")
    assert doc.values == {}
    assert doc.apply({"geometry.R": 7}, at=1.5, writer="p") == {}
    assert doc.values == {}


def test_value_and_parent_conflicts() -> None:
    doc = StateDoc()
    doc.apply({"geometry.torus.R": 1}, at=1.0, writer="p")
    with pytest.raises(ProtocolError) as err:
        doc.validate({"geometry.torus": 5}, "p", True)
    assert err.value.code == "invalid_path"
    with pytest.raises(ProtocolError):
        doc.validate({"geometry.torus.R.x": 5}, "p", True)
    doc.apply({"geometry.torus.R": None}, at=2.0, writer="p")
    doc.validate({"geometry.torus": 5}, "p", True)  # no live children any more


def test_key_limit() -> None:
    doc = StateDoc(max_keys=3)
    doc.apply({"geometry.a": 1, "geometry.b": 2}, at=1.0, writer="p")
    doc.validate({"geometry.a": 3, "geometry.c": 3}, "p", True)  # one new key fits
    with pytest.raises(ProtocolError) as err:
        doc.validate({"geometry.c": 1, "geometry.d": 1}, "p", True)
    assert err.value.code == "state_full"


def test_remove_area_only_touches_that_participant() -> None:
    doc = StateDoc()
    doc.apply({"participants.p1.hr": 60, "participants.p1.bio.x": 1}, at=1.0, writer="p1")
    doc.apply({"participants.p10.hr": 70}, at=1.0, writer="p10")
    assert doc.remove_area("participants.p1") == {"participants.p1.hr": None, "participants.p1.bio.x": None}
    assert doc.values == {"participants.p10.hr": 70}


def test_nest() -> None:
    assert nest({"a.b.c": 1, "a.d": 2, "e": 3}) == {"a": {"b": {"c": 1}, "d": 2}, "e": 3}


updates = st.lists(
    st.tuples(
        st.sampled_from(["geometry.R", "geometry.r", "oscillators.0.f"]),
        st.one_of(st.none(), st.integers(0, 9)),
        st.sampled_from([1.0, 2.0, 3.0]),
        st.sampled_from(["pa", "pb", "pc"]),
    ),
    min_size=1,
    max_size=7,
    unique_by=lambda u: (u[0], u[2], u[3]),  # one value per (path, stamp): as real writers produce
)


@given(updates)
def test_merge_converges_in_any_arrival_order(batch: list[tuple[str, int | None, float, str]]) -> None:
    results = set()
    for order in itertools.islice(itertools.permutations(batch), 50):
        doc = StateDoc()
        for path, value, at, writer in order:
            doc.apply({path: value}, at=at, writer=writer)
        results.add(tuple(sorted(doc.values.items())))
    assert len(results) == 1


def test_value_and_parent_in_one_update_conflict() -> None:
    doc = StateDoc()
    for changes in ({"geometry.e": 1, "geometry.e.f": 2}, {"geometry.e.f": 2, "geometry.e": None}):
        with pytest.raises(ProtocolError) as err:
            doc.validate(changes, "p", True)
        assert err.value.code == "invalid_path"
    assert doc.values == {} and doc.version == 0


def test_deleted_paths_free_their_room() -> None:
    doc = StateDoc(max_keys=4)
    for round_ in range(10):
        paths = {f"geometry.r{round_}k{i}": 1 for i in range(4)}
        doc.validate(paths, "p", True)
        doc.apply(paths, at=float(round_), writer="p")
        doc.apply(dict.fromkeys(paths), at=round_ + 0.5, writer="p")
    assert doc.values == {}
    assert doc.tombstone_count == sum(map(len, doc.tombstones.values())) <= 2 * doc.max_keys  # bounded


def test_forgotten_tombstones_still_beat_stale_writes_in_their_area_only() -> None:
    doc = StateDoc(max_keys=2)
    doc.apply({"participants.pa.old": 1}, at=1.0, writer="pa")
    doc.apply({"participants.pa.old": None}, at=5.0, writer="pa")
    for i in range(4):  # churn pushes the first tombstone out
        doc.apply({f"participants.pa.k{i}": None}, at=6.0 + i, writer="pa")
    assert "participants.pa.old" not in doc.tombstones["participants.pa"]
    assert doc.apply({"participants.pa.old": 7}, at=2.0, writer="pa") == {}  # older than what was forgotten
    assert doc.apply({"participants.pb.x": 7}, at=2.0, writer="pb") == {"participants.pb.x": 7}  # other area
    assert doc.apply({"geometry.R": 1}, at=0.5, writer="lead") == {"geometry.R": 1}


def test_churn_in_one_area_does_not_raise_another_areas_floor() -> None:
    doc = StateDoc(max_keys=2)
    doc.apply({"geometry.old": 1}, at=1.0, writer="lead")
    doc.apply({"geometry.old": None}, at=2.0, writer="lead")  # the leader's one tombstone
    for i in range(20):  # a participant churns through its own paths
        doc.apply({f"participants.pa.k{i}": 1}, at=10.0 + i, writer="pa")
        doc.apply({f"participants.pa.k{i}": None}, at=10.5 + i, writer="pa")
    assert doc.tombstone_count <= 2 * doc.max_keys
    assert doc.tombstones["geometry"] == {"geometry.old": (2.0, "lead")}  # untouched
    assert "geometry" not in doc.floors
    assert doc.apply({"geometry.fresh": 1}, at=3.0, writer="lead") == {"geometry.fresh": 1}
    assert doc.apply({"participants.pa.k0": 1}, at=9.0, writer="pa") == {}  # the churner's own floor
