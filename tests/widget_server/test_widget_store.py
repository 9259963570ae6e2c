"""WidgetStore on its own: ids, ordering, replacement, deletion, and concurrent adds."""

from __future__ import annotations

import threading

import pytest

from widget_server.store import Widget, WidgetStore


def test_ids_start_at_one_and_increase() -> None:
    store = WidgetStore()
    assert [store.add(name, 1).id for name in "abc"] == [1, 2, 3]


def test_deleted_ids_are_never_reused() -> None:
    store = WidgetStore()
    store.add("a", 1)
    last = store.add("b", 1)
    assert store.delete(last.id) is True
    assert store.add("c", 1).id == last.id + 1


def test_list_is_a_snapshot_ordered_by_id() -> None:
    store = WidgetStore()
    for name in "cab":
        store.add(name, 0)
    store.replace(1, "z", 5)
    snapshot = store.list_widgets()
    store.add("later", 0)
    assert [w.id for w in snapshot] == [1, 2, 3]
    assert snapshot[0] == Widget(1, "z", 5)
    assert len(store) == 4


def test_replace_and_delete_report_unknown_ids() -> None:
    store = WidgetStore()
    assert store.get(1) is None
    assert store.replace(1, "x", 1) is None
    assert store.delete(1) is False
    assert len(store) == 0


def test_widgets_are_immutable() -> None:
    widget = WidgetStore().add("a", 1)
    with pytest.raises(AttributeError):
        widget.quantity = 2  # type: ignore[misc]


def test_concurrent_adds_get_distinct_ids() -> None:
    store = WidgetStore()
    threads, per_thread = 8, 500
    start = threading.Barrier(threads)

    def add_many() -> None:
        start.wait(timeout=5)
        for _ in range(per_thread):
            store.add("w", 1)

    workers = [threading.Thread(target=add_many) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=10)

    ids = [w.id for w in store.list_widgets()]
    assert ids == list(range(1, threads * per_thread + 1))
