"""Cells: corrections replace values, voids empty cells, two heads are a conflict."""

from __future__ import annotations

from journal.cells import cell_key, cell_values, read_cells, term_works
from journal.recording.recorder import record_entry

from ..factories import NOW


def fo(world, score: int, **fields):
    return record_entry(
        world.session, world.signed("grade", value={"score": score}, **fields), now=NOW
    )


def test_a_correction_replaces_the_value(world):
    first = fo(world, 4)
    record_entry(
        world.session,
        world.signed(
            "correction",
            corrects="grade",
            component="FO",
            supersedes=[first.entry_id],
            reason="қате",
            value={"score": 9},
        ),
        now=NOW,
    )
    cell = read_cells(world.session, world.log.id)[
        cell_key("FO", world.lesson.id, world.student.id)
    ]
    assert cell.value == {"score": 9}
    assert not cell.conflict
    assert [e.seq for e in cell.history] == [0, 1]


def test_a_void_correction_empties_the_cell(world):
    mark = record_entry(world.session, world.signed("attendance"), now=NOW)
    record_entry(
        world.session,
        world.signed(
            "correction",
            corrects="attendance",
            supersedes=[mark.entry_id],
            reason="was present",
            value="void",
        ),
        now=NOW,
    )
    cell = read_cells(world.session, world.log.id)[
        cell_key("att", world.lesson.id, world.student.id)
    ]
    assert cell.value is None and not cell.conflict


def test_two_devices_writing_one_cell_is_a_conflict_until_resolved(world):
    laptop = world.add_device()
    a = fo(world, 7)
    b = record_entry(
        world.session, world.signed("grade", device=laptop, value={"score": 8}), now=NOW
    )
    key = cell_key("FO", world.lesson.id, world.student.id)
    cell = read_cells(world.session, world.log.id)[key]
    assert cell.conflict and cell.value is None
    record_entry(
        world.session,
        world.signed(
            "correction",
            corrects="grade",
            component="FO",
            supersedes=[a.entry_id, b.entry_id],
            reason="resolved: 8",
            value={"score": 8},
        ),
        now=NOW,
    )
    cell = read_cells(world.session, world.log.id)[key]
    assert not cell.conflict and cell.value == {"score": 8}


def test_term_work_collects_current_values(world):
    fo(world, 6)
    other_lesson = world.lesson
    values = cell_values(read_cells(world.session, world.log.id))
    work = term_works(values, [world.student.id], [other_lesson.id])[world.student.id]
    assert work.fo == (6,)
    assert work.soch is None
