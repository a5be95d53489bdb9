"""The Dealer's per-unit tallies: the compact store, event rules, merging by unit, journal, snapshots."""

from __future__ import annotations

import asyncio
import json
import os
import random
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from squals_action.dealer import columns as cols
from squals_action.dealer.bucketing import unit_key
from squals_action.dealer.config import config_from_json, config_to_json
from squals_action.dealer.interface import DealerConfig, DealerError, EventSums
from squals_action.dealer.journal import Journal, compact, fold, recover
from squals_action.dealer.tally import RECORD, TallyBook, merged_tallies, tallies_from_json, tally_to_json
from squals_action.dealer.units import build_slots


def _brute(units: dict[int, tuple[str, int]], events: dict[tuple[int, str], tuple[int, float]]) -> dict:
    """The sums recomputed from per-unit values, the way a statistician would."""
    out: dict = defaultdict(lambda: [0.0, 0.0, 0.0])
    ev: dict = defaultdict(lambda: [0.0] * 8)
    for variant, acts in units.values():
        s = out[variant]
        s[0], s[1], s[2] = s[0] + 1, s[1] + acts, s[2] + acts * acts
    for (key, kind), (c, x) in events.items():
        variant, a = units[key]
        e = ev[(variant, kind)]
        for i, term in enumerate((1, c, c * c, x, x * x, c * x, c * a, x * a)):
            e[i] += term
    return {"units": dict(out), "events": {k: EventSums(*v) for k, v in ev.items()}}


def _sums(book: TallyBook) -> dict:
    snap = book.snapshot()
    return {
        "units": {
            n: [t.units, t.unit_activations, t.unit_activations_sq] for n, t in snap.items() if t.units
        },
        "events": {(n, k): s for n, t in snap.items() for k, s in t.event_sums.items()},
    }


def _close(a: dict, b: dict) -> None:
    assert a["units"].keys() == b["units"].keys()
    for k in a["units"]:
        assert a["units"][k] == pytest.approx(b["units"][k])
    assert a["events"].keys() == b["events"].keys()
    for k in a["events"]:
        assert list(vars(a["events"][k]).values()) == pytest.approx(list(vars(b["events"][k]).values()))


def test_one_unit_posting_1000_times_counts_once_and_a_capped_kind_counts_up_to_its_cap() -> None:
    book = TallyBook({"revenue": 3})
    key = unit_key("u1")
    book.arrive(key, "a")
    counted = [book.event(key, "checkout") for _ in range(1000)]
    assert [c.counted for c in counted if c] == [1] + [0] * 999
    assert [book.event(key, "revenue", 1, 2.5).counted for _ in range(5)] == [1, 1, 1, 0, 0]  # type: ignore[union-attr]
    tally = book.snapshot()["a"]
    assert tally.events == {"checkout": 1, "revenue": 3}
    assert tally.event_units == {"checkout": 1, "revenue": 1}
    assert tally.event_sums["revenue"] == EventSums(1, 3, 9, 7.5, 56.25, 22.5, 3, 7.5)


def test_an_event_for_a_unit_never_assigned_is_refused_and_not_counted() -> None:
    book = TallyBook()
    book.arrive(unit_key("known"), "a")
    assert book.event(unit_key("stranger"), "checkout") is None
    assert book.snapshot()["a"].events == {}
    assert book.unit_variant(unit_key("stranger")) is None
    assert book.unit_variant(unit_key("known")) == "a"


def test_running_sums_equal_the_sums_over_units_through_growth_and_a_reload() -> None:
    rng = random.Random(7)
    book = TallyBook({"revenue": 1000, "view": 5})
    units: dict[int, tuple[str, int]] = {}
    events: dict[tuple[int, str], tuple[int, float]] = {}
    caps = {"revenue": 1000, "view": 5, "checkout": 1}
    keys = [unit_key(f"u{i}") for i in range(5000)]  # past 1024 slots several times: the table grows
    for _ in range(30_000):
        key = rng.choice(keys)
        if rng.random() < 0.6 or key not in units:
            variant = units[key][0] if key in units else rng.choice("ab")
            book.arrive(key, variant)
            units[key] = (variant, units.get(key, (variant, 0))[1] + 1)
        else:
            kind = rng.choice(list(caps))
            value = round(rng.uniform(-5, 50), 2) if kind == "revenue" else 0.0
            count = rng.randint(1, 3)
            c, x = events.get((key, kind), (0, 0.0))
            take = min(count, caps[kind] - c)
            got = book.event(key, kind, count, value)
            assert got is not None and got.counted == max(take, 0)
            if take > 0:
                events[(key, kind)] = (c + take, x + take * value)
    _close(_sums(book), _brute(units, events))
    assert book.store.units == len(units) and len(book.store.slots) >= 2 * len(units)
    again = TallyBook.from_columns(book.to_columns(), book.caps)
    _close(_sums(again), _brute(units, events))
    without_sums = [{n: replace(t, event_sums={}) for n, t in b.snapshot().items()} for b in (again, book)]
    assert without_sums[0] == without_sums[1]  # the float sums differ in the last bits (order of additions)


def test_the_slot_table_finds_every_key_even_when_keys_collide() -> None:
    keys = np.array([5, 5 + 1024, 5 + 2048, 6, 1023, 2047, 0], np.uint64)  # same low bits, wrap-around
    slots = build_slots(keys, 1024)
    found = {int(keys[r - 1]) for r in slots if r}
    assert found == {int(k) for k in keys}


def test_merged_tallies_count_a_unit_once_and_recomputes_squares_from_merged_values() -> None:
    first, second = TallyBook({"revenue": 100}), TallyBook({"revenue": 100})
    shared, alone = unit_key("shared"), unit_key("alone")
    for book in (first, second):
        book.arrive(shared, "a")
        book.event(shared, "revenue", 1, 10.0)
        book.event(shared, "checkout")
    first.arrive(alone, "a")
    merged = merged_tallies([first.to_columns(), second.to_columns()], first.caps)["a"]
    assert merged.units == 2 and merged.activations == 3
    assert (merged.unit_activations, merged.unit_activations_sq) == (3, 2 * 2 + 1)
    # the shared unit: 2 requests, revenue 20 (2 events), checkout once (its cap), never 10² + 10²
    assert merged.event_sums["revenue"] == EventSums(1, 2, 4, 20.0, 400.0, 40.0, 4, 40.0)
    assert merged.event_sums["checkout"].count == 1 and merged.events["checkout"] == 1


def test_tallies_round_trip_through_the_admin_json() -> None:
    book = TallyBook()
    key = unit_key("u")
    book.arrive(key, "a").add_latency(3.0)
    book.event(key, "buy", 1, 4.0)
    book.plain_event("a", "signup", 2)
    tally = book.snapshot()["a"]
    assert tally.events == {"buy": 1, "signup": 2} and tally.event_units == {"buy": 1}
    assert tallies_from_json(json.loads(json.dumps({"a": tally_to_json(tally)}))) == {"a": tally}


def test_event_names_and_variants_are_bounded() -> None:
    book = TallyBook()
    key = unit_key("u")
    book.arrive(key, "a")
    for i in range(256):
        book.event(key, f"e{i}")
    with pytest.raises(DealerError, match="more than 256 distinct event names"):
        book.event(key, "one-too-many")
    assert book.event(key, "e1") is not None


def test_a_snapshot_file_round_trips_and_a_damaged_one_names_itself(tmp_path: Path) -> None:
    book = TallyBook()
    for i in range(50):
        book.arrive(unit_key(f"u{i}"), "ab"[i % 2]).add_latency(i)
        book.event(unit_key(f"u{i}"), "buy", 1, float(i))
    path = tmp_path / "snapshot-000001.npz"
    cols.save(book.to_columns(), path)
    assert TallyBook.from_columns(cols.load(path)).snapshot() == book.snapshot()
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(DealerError, match=r"snapshot-000001\.npz: damaged tally snapshot"):
        cols.load(path)


def test_the_tallies_on_disk_carry_their_format_and_another_one_is_refused(tmp_path: Path) -> None:
    """names.json and snapshots say which layout they are in; files from before the marker are format 1."""
    directory = tmp_path / "tallies"

    async def run() -> None:
        book = TallyBook()
        journal = Journal(directory, 1, book.names, segment_bytes=1 << 20)
        book.journal, book.names_changed = journal.append, journal.names_changed
        book.arrive(unit_key("u"), "a")
        await journal.durable()
        await journal.compact()
        await journal.close()

    asyncio.run(run())
    assert json.loads((directory / "names.json").read_text())["format"] == cols.FORMAT == 1
    (snapshot,) = directory.glob("snapshot-*.npz")
    with np.load(snapshot) as data:
        assert json.loads(bytes(data["names"]).decode())["format"] == 1
    (directory / "names.json").write_text('{"variants": ["a"], "kinds": []}')  # before the marker
    assert recover(directory)[0].variants == ["a"]
    columns = cols.load(snapshot)
    with np.load(snapshot) as data:
        arrays = dict(data)
    arrays["names"] = np.frombuffer(b'{"format": 3, "variants": ["a"], "kinds": []}', np.uint8)
    np.savez(snapshot, **arrays)
    with pytest.raises(DealerError, match=r"snapshot-\d+\.npz: tallies written in format 3"):
        cols.load(snapshot)
    assert columns.variants == ["a"]


def test_the_journal_holds_every_change_through_rotation_and_compaction(tmp_path: Path) -> None:
    directory = tmp_path / "tallies"

    async def run() -> TallyBook:
        book = TallyBook({"revenue": 10})
        journal = Journal(directory, 1, book.names, segment_bytes=2000 * RECORD.size)  # rotates a few times
        book.journal, book.names_changed = journal.append, journal.names_changed
        rng = random.Random(3)
        for i in range(3000):
            key = unit_key(f"u{rng.randrange(400)}")
            counter = book.arrive(key, rng.choice("ab"))
            counter.add_latency(rng.uniform(0.1, 50))
            if i % 7 == 0:
                counter.add_server_error()
            if i % 5 == 0:
                book.event(key, rng.choice(["buy", "revenue"]), 2, 1.5)
            if i % 500 == 0:
                await journal.durable()
        book.plain_event("b", "signup", 3)
        await journal.durable()
        await journal.compact()
        book.arrive(unit_key("late"), "b")  # after the last compaction: only in a segment
        await journal.durable()
        await journal.close()
        return book

    book = asyncio.run(run())
    assert len(list(directory.glob("snapshot-*.npz"))) == 1
    columns, next_segment = recover(directory)
    assert TallyBook.from_columns(columns, book.caps).snapshot() == book.snapshot()
    compact(directory, next_segment - 1)
    assert [p.name for p in sorted(directory.iterdir())] == [
        "names.json",
        f"snapshot-{next_segment - 1:06d}.npz",
    ]
    assert TallyBook.from_columns(recover(directory)[0], book.caps).snapshot() == book.snapshot()


def test_a_torn_last_record_is_left_out(tmp_path: Path) -> None:
    directory = tmp_path / "tallies"

    async def run() -> TallyBook:
        book = TallyBook()
        journal = Journal(directory, 1, book.names, segment_bytes=1 << 20)
        book.journal, book.names_changed = journal.append, journal.names_changed
        book.arrive(unit_key("u"), "a")
        await journal.close()
        return book

    book = asyncio.run(run())
    with (directory / "segment-000001.bin").open("ab") as handle:
        handle.write(RECORD.pack(2, 0, 0, 1, unit_key("u"), 0.0)[:10])  # killed mid-write
    assert TallyBook.from_columns(recover(directory)[0]).snapshot() == book.snapshot()


def test_a_folded_journal_counts_once_even_when_the_fold_is_interrupted(tmp_path: Path) -> None:
    """A retired worker's journal moves into worker 0's with one rename: run again over what a crash after
    that rename leaves (the source's names.json), the fold adds nothing; the book that keeps writing into the
    target after it reads both."""
    target, source = tmp_path / "tallies", tmp_path / "tallies" / "w1"

    async def write(
        directory: Path, first: int, units: list[str], variant: str, book: TallyBook | None = None
    ) -> TallyBook:
        book = book or TallyBook()
        journal = Journal(directory, first, book.names, segment_bytes=1 << 20)
        book.journal, book.names_changed = journal.append, journal.names_changed
        journal.names_changed()  # as a worker does at start: names.json in the recovered book's order
        for unit in units:
            book.arrive(unit_key(unit), variant)
            book.event(unit_key(unit), "buy")
        await journal.close()
        return book

    zero = asyncio.run(write(target, 1, ["shared", "only0"], "a"))
    one = asyncio.run(write(source, 1, ["shared", "only1"], "b"))
    expected = merged_tallies([zero.to_columns(), one.to_columns()], {})
    fold(source, target)
    assert not source.exists() and (target / "fold-000002.npz").exists()
    source.mkdir()
    (source / "names.json").write_text('{"variants": ["b"], "kinds": ["buy"]}')  # what a crash leaves
    fold(source, target)
    assert not source.exists()
    columns, next_segment = recover(target)
    assert next_segment == 3
    assert TallyBook.from_columns(columns).snapshot() == expected
    assert sum(t.units for t in expected.values()) == 3 and expected["a"].activations == 2

    # worker 0 goes on from the recovered book: a new segment after the fold, then a compaction of it all
    later = asyncio.run(write(target, next_segment, ["only1"], "b", TallyBook.from_columns(columns)))
    compact(target, next_segment)
    assert TallyBook.from_columns(recover(target)[0]).snapshot() == later.snapshot()
    assert later.snapshot()["b"].activations == expected["b"].activations + 1
    assert sum(t.units for t in later.snapshot().values()) == 3


def test_event_rules_in_the_config() -> None:
    config = DealerConfig(
        upstreams={"a": "http://127.0.0.1:1"},
        weights={"a": 1.0},
        token="t",
        event_caps={"revenue": 50, "buy": 1},
    )
    raw = config_to_json(config)
    assert raw["events"] == {"buy": {"count": "once"}, "revenue": {"count": "all", "cap": 50}}
    assert config_from_json(raw, "c.json") == config
    raw["events"] = {"revenue": {"count": "all"}}
    assert config_from_json(raw, "c.json").event_caps == {"revenue": 100}
    raw["events"] = {"revenue": {"count": "some"}}
    with pytest.raises(DealerError, match=r"c\.json: .*events\.revenue: expected"):
        config_from_json(raw, "c.json")
    raw["events"] = {"revenue": {"count": "all", "cap": 0}}
    with pytest.raises(DealerError, match=r"events\.revenue\.cap must be an integer from 1"):
        config_from_json(raw, "c.json")


def test_a_journal_that_cannot_write_says_so_to_whoever_waits(tmp_path: Path) -> None:
    async def run() -> None:
        book = TallyBook()
        journal = Journal(tmp_path / "tallies", 1, book.names, segment_bytes=1 << 20)
        book.journal, book.names_changed = journal.append, journal.names_changed
        writable = journal._fd
        journal._fd = os.open(os.devnull, os.O_RDONLY)  # the disk refuses from now on
        book.arrive(unit_key("u"), "a")
        with pytest.raises(OSError):
            await journal.durable()
        os.close(journal._fd)
        journal._fd = writable
        await journal.close()

    asyncio.run(run())
