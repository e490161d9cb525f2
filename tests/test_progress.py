"""Progress on long work never goes backwards: the total is shown only once it is known."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from storelab.ingest.progress import ByteProgress, CountProgress


@given(st.lists(st.tuples(st.booleans(), st.integers(0, 10), st.integers(0, 1 << 20)), max_size=40))
def test_the_bar_never_goes_backwards(steps: list[tuple[bool, int, int]]) -> None:
    """Work found and work done interleave as a scan and its workers do; what the bar shows
    done never shrinks, and it has a total only after the scan, never less than what is done."""
    shown: list[float] = []
    with ByteProgress("ingest", True, scanning=True) as bar:
        task = bar._progress.tasks[0]
        found = done = 0
        for is_found, files, nbytes in steps:
            if is_found:
                bar.grow(files, nbytes)
                found += nbytes
            elif done + nbytes <= found:  # workers only finish what the scan has found
                bar.advance(files, nbytes)
                done += nbytes
            assert task.total is None  # still scanning: a pulse, not a fraction that could shrink
            shown.append(task.completed)
        bar.scan_done()
        assert task.total == found and task.completed == done <= task.total
    assert shown == sorted(shown)


def test_a_count_learns_its_total() -> None:
    with CountProgress("fetch", True, None, "files") as bar:
        task = bar._progress.tasks[0]
        bar.advance(1, "first")
        assert task.total is None and task.completed == 1
        bar.advance(1, "second", total=5)
        assert task.total == 5 and task.completed == 2 and "second" in task.description


def test_no_terminal_no_bar() -> None:
    with ByteProgress("ingest", False, scanning=True) as bar:
        bar.grow(1, 10)
        bar.advance(1, 10)
        bar.scan_done()
    assert bar._progress is None
