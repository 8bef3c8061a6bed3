"""The compact catch-up log gives back the patches it was given."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from canvas.document import Author
from canvas.patch_log import PatchLog
from canvas.store import Patch

START = datetime(2026, 12, 7, 9, 30, tzinfo=UTC)


def patch(seq: int, author: Author = Author.STUDENT, epoch: str = "e1") -> Patch:
    ops = [{"op": "add", "path": f"/elements/k{seq}", "value": {"n": seq, "s": "é" * (seq % 7)}}]
    who = "s1" if author is Author.STUDENT else "t1"
    at = START + timedelta(microseconds=seq * 1_234_567)
    return Patch.of(seq, epoch, author, who, ops, at)


def test_patches_come_back_equal_with_their_authors_epochs_and_times() -> None:
    log = PatchLog()
    held = [patch(1), patch(2, Author.TUTOR), patch(3, epoch="e2"), patch(5)]  # a hole at 4
    for p in held:
        log.append(p)
    assert len(log) == 4
    assert log.first_seq == 1
    assert log.size == sum(p.size for p in held)
    assert log.between(0) == held
    assert log.between(1, 3) == held[1:3]
    assert log.between(3) == [held[3]]
    assert log.before(1, 5) == held[1:3]
    assert log.between(5) == []
    assert log.between(0)[1].at == START + timedelta(microseconds=2 * 1_234_567)


@given(
    st.lists(st.integers(min_value=1, max_value=5), min_size=1, max_size=60),
    st.lists(st.booleans(), max_size=60),
)
def test_dropping_the_oldest_keeps_the_rest_intact(steps: list[int], drops: list[bool]) -> None:
    """Appends (seqs rising by 1-5) interleaved with drops: the log always equals the
    list of patches it should hold, and counts their bytes."""
    log, model, seq = PatchLog(), [], 0
    for i, step in enumerate(steps):
        seq += step
        p = patch(seq, Author.TUTOR if step == 5 else Author.STUDENT)
        log.append(p)
        model.append(p)
        if i < len(drops) and drops[i] and len(model) > 1:
            log.drop_oldest()
            model.pop(0)
        assert log.between(0) == model
        assert log.size == sum(p.size for p in model)
        assert log.first_seq == model[0].seq
    middle = model[len(model) // 2].seq
    assert log.between(middle) == [p for p in model if p.seq > middle]
    assert log.before(0, middle) == [p for p in model if p.seq < middle]
