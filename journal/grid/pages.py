"""The grid page's body, kept per worker process and brought up to date by the log's new entries.

A rendered body is kept under everything it depends on but the entries (``Grid.frame_key``, the
teacher, the language, the grading rule, the app version) together with the log's size and last
leaf it was read at. On the next request the frame (one query) tells which case holds:

- the same size and leaf: the kept body is the page, nothing else is read;
- the log grew, and the kept leaf is still the leaf at that place (the same history): only the
  new entries are read, the kept grid takes them, and only the rows, topic line and state they
  change are rendered again (``patch``);
- anything else (no copy, another history, an entry of a kind that may change more than its
  cells, a long way behind): the whole body is built (``build``).

Each part (top, one row per pupil, tail, scripts) is rendered by the same template whichever way
the body is made, so a patched body is the body a full build gives. The cache is correct across
any number of worker processes: each keeps its own, keyed by what the database says now and
checked against it on every request, and nothing is ever shared or invalidated between them.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Any

from flask import Response, current_app, render_template, request
from flask import session as browser_session
from flask_babel import get_locale
from flask_wtf.csrf import generate_csrf
from markupsafe import Markup
from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from auth.models import User

from ..db import single_statement
from ..grading import GradingRule
from ..models import Entry, Supersession
from .build import (
    GRADE_LAYERS,
    LAYER_ORDER,
    Grid,
    TermGradeCell,
    YearColumn,
    fill_grid,
    grid_state,
    grid_urls,
    head_value,
    lesson_topic,
    open_details,
    student_row,
    term_column,
    year_column,
)
from .strings import attendance_labels, grid_strings, layer_names, weekday_names

# Cells whose entries a kept grid takes without a full build; only the graded ones among them
# change the term column. Any other entry (a term grade, a sealed term, a decision...) rebuilds.
PATCHED_LAYERS = frozenset({"topic", *LAYER_ORDER})
UNGRADED_LAYERS = frozenset({"topic", "att"})
# Past this many new entries a full build is about as quick as reading them.
PATCH_LIMIT = 400


@dataclass(frozen=True)
class GridPage:
    """A rendered body and what it was made from (never changed once kept: a patch makes a
    new one, so other threads may read the old)."""

    grid: Grid
    term_cells: list[TermGradeCell]
    year: YearColumn | None
    rule: GradingRule
    top: str
    rows: list[str]
    tail: str
    scripts: str
    fragments: dict[str, str]  # cell -> its heads in JSON, as in the state (``state_json``)

    @property
    def cursor(self) -> int:
        return self.grid.cursor

    @property
    def parts(self) -> list[str]:
        """The body's parts in order: the top, each row, the tail, the scripts."""
        return [self.top, *self.rows, self.tail, self.scripts]

    @property
    def body(self) -> Markup:
        # Autoescaping templates made every part: safe HTML already.
        return Markup("\n".join(self.parts))  # noqa: S704


class Kept:
    """Rendered texts kept under their keys, least recently used going first. Nothing goes
    stale: a key names everything its text was made from, checked against the database (a
    body's frame) in the same request."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.lock = threading.Lock()
        self.items: OrderedDict[tuple[Any, ...], Any] = OrderedDict()

    def get(self, key: tuple[Any, ...]) -> Any:
        with self.lock:
            found = self.items.get(key)
            if found is not None:
                self.items.move_to_end(key)
            return found

    def put(self, key: tuple[Any, ...], value: Any) -> Any:
        with self.lock:
            self.items[key] = value
            self.items.move_to_end(key)
            while len(self.items) > self.size:
                self.items.popitem(last=False)
        return value


def rendered_grids() -> Kept:
    """This app's rendered grids (``GridPage`` and its body): about 200 KiB each for a full
    class, so 64 keep a busy teacher's week in some MiB per worker."""
    return current_app.extensions.setdefault("journal.rendered_grids", Kept(64))


def keep(key: tuple[Any, ...], page: GridPage, was: Any = None) -> bytes:
    """Keep ``page`` under ``key`` and return its body in UTF-8. Kept encoded, part by part:
    the response sends these bytes as they are, and a part a patch left as it was (the same
    text) keeps its bytes (``was``: what was kept before)."""
    encoded = {}
    if was is not None:
        encoded = {id(text): data for text, data in zip(was[0].parts, was[2], strict=True)}
    parts = page.parts
    # By identity: the kept copy holds its texts, so their ids are not reused meanwhile.
    data = [encoded.get(id(text)) or text.encode() for text in parts]
    body = b"\n".join(data)
    rendered_grids().put(key, (page, body, data))
    return body


def grid_body(session: Session, grid: Grid, user: User, rule: GradingRule, key: Any) -> bytes:
    """The body of the opened grid (``open_grid`` without details), in UTF-8: kept, patched or
    built."""
    kept = rendered_grids().get(key)
    if kept is not None:
        page, body, _parts = kept
        if page.cursor == grid.cursor and page.grid.last_leaf == grid.last_leaf:
            return body
        if page.cursor < grid.cursor:
            patched = patch(session, page, grid, user)
            if patched is not None:
                return keep(key, patched, kept)
    open_details(session, grid)
    return keep(key, build(session, grid, user, rule))


# -- the page around the body -----------------------------------------------------------------

# Stand-ins for what changes between two requests for the same page: the body, and the CSRF
# token (signed with the time). Texts no page holds.
_BODY_SLOT = "\x00grid-body\x00"
_TOKEN_SLOT = "\x00csrf-token\x00"  # noqa: S105 - a stand-in, no secret


def grid_page(grid: Grid, user: User, body: bytes) -> Response:
    """``teacher/grid.html`` around ``body``. The page around it (title, header, language and
    sign-out forms) is rendered once per user, name, language, address and grid names and kept
    with the token and the body left out: a grid opened again only splices both in."""
    if "_flashes" in browser_session:  # a message to show once: render as any page does
        html = Markup(body.decode())  # noqa: S704 - rendered by autoescaping templates
        return Response(render_template("teacher/grid.html", grid=grid, body=html))
    key = (
        user.id,
        user.full_name,
        str(get_locale()),
        request.full_path,
        grid.class_group.name,
        grid.subject.name,
    )
    shells = current_app.extensions.setdefault("journal.grid_shells", Kept(256))
    parts = shells.get(key)
    if parts is None:
        text = render_template(
            "teacher/grid.html",
            grid=grid,
            body=Markup(_BODY_SLOT),  # noqa: S704 - a stand-in, replaced below
            csrf_token=lambda: _TOKEN_SLOT,
        )
        before, after = text.split(_BODY_SLOT)
        parts = shells.put(
            key,
            (
                [part.encode() for part in before.split(_TOKEN_SLOT)],
                [part.encode() for part in after.split(_TOKEN_SLOT)],
            ),
        )
    # As the template's csrf_token(): the same text (URL-safe: escaping leaves it alone).
    token = generate_csrf().encode()
    before, after = parts
    # A list of bytes: sent as it is, with its Content-Length.
    return Response([token.join(before), body, token.join(after)], mimetype="text/html")


# -- rendering --------------------------------------------------------------------------------


def _layers(grid: Grid) -> tuple[str, ...]:
    return ("att", *GRADE_LAYERS, "all") if grid.subject.graded else ("att",)


def render_top(grid: Grid) -> str:
    return render_template(
        "teacher/grid_top.html",
        grid=grid,
        state={"urls": grid_urls()},
        layers=_layers(grid),
        layer_names=layer_names(),
        weekdays=weekday_names()["days"],
    )


def render_rows(
    grid: Grid, term_cells: list[TermGradeCell], indexes: range | list[int]
) -> dict[int, str]:
    template = current_app.jinja_env.get_template("teacher/grid_row.html")
    graded = grid.subject.graded
    voided = grid_strings()["voided"]
    return {
        i: template.render(
            number=i + 1,
            student=grid.students[i],
            cells=grid.rows[i],
            graded=graded,
            term_cell=term_cells[i] if graded else None,
            voided=voided,
        )
        for i in indexes
    }


def render_tail(grid: Grid, rule: GradingRule, year: YearColumn | None) -> str:
    from .shell import app_version

    return render_template(
        "teacher/grid_tail.html", grid=grid, rule=rule, year=year, app_version=app_version()
    )


# Where the state goes in the rendered scripts.
_STATE_SLOT = "\x00grid-state\x00"


def render_scripts(grid: Grid, user: User, fragments: dict[str, str]) -> str:
    """``teacher/grid_scripts.html``, rendered once per language and root with the state left
    out (the rest is the language's words and a static address): a patch splices its state."""
    kept = current_app.extensions.setdefault("journal.grid_scripts", {})
    key = (str(get_locale()), request.script_root)
    around = kept.get(key)
    if around is None:
        text = current_app.jinja_env.get_template("teacher/grid_scripts.html").render(
            state_json=Markup(_STATE_SLOT),  # noqa: S704 - a stand-in, replaced below
            strings=grid_strings(),
        )
        before, after = text.split(_STATE_SLOT)
        around = kept[key] = (before, after)
    return "".join((around[0], state_json(grid, user, fragments), around[1]))


# Where the heads go in the encoded state: a text no value holds.
HEADS_SLOT = "\x00heads\x00"


def _html_safe(text: str) -> str:
    """As jinja2's htmlsafe_json_dumps (the tojson filter) escapes JSON: character by
    character, so parts escaped apart join into the whole escaped."""
    return (
        text.replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("'", "\\u0027")
    )


def head_fragment(cell: str, heads: list[tuple[str, int, Any]]) -> str:
    """One member of the state's "heads" object, as ``json.dumps`` writes it, HTML-safe."""
    dumps = current_app.json.dumps
    return _html_safe(f"{dumps(cell)}: {dumps([list(head) for head in heads])}")


def state_json(grid: Grid, user: User, fragments: dict[str, str]) -> Markup:
    """``grid_state(grid, user)|tojson``, the heads spliced in from their kept fragments: a
    new entry encodes only its cell. (The app's JSON sorts keys and separates items by ", "
    and keys by ": ", as the fragments do.)"""
    state = grid_state(grid, user, with_heads=False)
    state["heads"] = HEADS_SLOT
    dumps = current_app.json.dumps
    heads = "{" + ", ".join([fragments[cell] for cell in sorted(fragments)]) + "}"
    text = _html_safe(dumps(state)).replace(dumps(HEADS_SLOT), heads, 1)
    return Markup(text)  # noqa: S704 - escaped as the tojson filter does


def build(session: Session, grid: Grid, user: User, rule: GradingRule) -> GridPage:
    """The whole body, from the grid's details and all its entries."""
    fill_grid(session, grid)
    term_cells = term_column(session, grid, rule)
    year = None if grid.viewing else year_column(session, grid)
    rows = render_rows(grid, term_cells, range(len(grid.students)))
    fragments = {cell: head_fragment(cell, heads) for cell, heads in grid.heads.items()}
    return GridPage(
        grid=grid,
        term_cells=term_cells,
        year=year,
        rule=rule,
        top=render_top(grid),
        rows=[rows[i] for i in range(len(grid.students))],
        tail=render_tail(grid, rule, year),
        scripts=render_scripts(grid, user, fragments),
        fragments=fragments,
    )


# -- patching ---------------------------------------------------------------------------------


# The entries appended since a kept copy (and the one before them, whose leaf must be the kept
# last leaf), each with whether a correction has superseded it. Built once.
NEW_ENTRIES = (
    select(
        Entry.entry_id,
        Entry.seq,
        Entry.kind,
        Entry.cell,
        Entry.lesson_id,
        Entry.leaf_hash,
        Entry.leaf,
        select(Supersession.correction_entry_id)
        .where(
            Supersession.log_id == bindparam("log_id"),
            Supersession.superseded_entry_id == Entry.entry_id,
        )
        .exists()
        .label("superseded"),
    )
    .where(
        Entry.log_id == bindparam("log_id"),
        Entry.seq >= bindparam("start"),
        Entry.seq < bindparam("end"),
    )
    .order_by(Entry.seq)
)


def patch(session: Session, page: GridPage, now: Grid, user: User) -> GridPage | None:
    """``page`` brought up to ``now``'s cursor by the entries appended since, or None when a
    full build is due (another history, too many entries, an entry of another kind)."""
    kept = page.grid
    if now.cursor - kept.cursor > PATCH_LIMIT:
        return None
    start = kept.cursor - 1 if kept.cursor > 0 else 0
    with single_statement(session):  # read right after the session's, as a rule
        found = session.execute(
            NEW_ENTRIES, {"log_id": kept.log.id, "start": start, "end": now.cursor}
        ).all()
    if kept.cursor > 0:
        if not found or found[0].seq != start or bytes(found[0].leaf_hash) != kept.last_leaf:
            return None  # not the history the copy was read from
        found = found[1:]
    if len(found) != now.cursor - kept.cursor:
        return None
    lessons = {lesson.id for lesson in kept.lessons}
    new = []
    corrections = []
    for row in found:
        layer = row.cell.split(":", 1)[0] if row.cell else None
        if layer not in PATCHED_LAYERS:
            return None
        if row.kind == "correction":
            corrections.append(row.entry_id)
        if row.lesson_id in lessons:
            new.append(row)

    heads = dict(kept.heads)
    superseded = list(zip(kept.superseded_seqs, kept.superseded, strict=True))
    changed: set[str] = set()
    for row in new:
        if row.superseded:
            superseded.append((row.seq, row.entry_id))
            continue
        value = head_value(json.loads(row.leaf)["payload"])
        heads[row.cell] = [*heads.get(row.cell, []), (row.entry_id, row.seq, value)]
        changed.add(row.cell)
    if corrections:
        for entry_id, cell in session.execute(
            select(Supersession.superseded_entry_id, Entry.cell)
            .join(Entry, Entry.entry_id == Supersession.superseded_entry_id)
            .where(
                Supersession.log_id == kept.log.id,
                Supersession.correction_entry_id.in_(corrections),
            )
        ):
            cell_heads = heads.get(cell) if cell else None
            gone = [head for head in cell_heads or [] if head[0] == entry_id]
            if not gone or cell_heads is None:
                continue  # not a head of this grid, or already taken off
            left = [head for head in cell_heads if head[0] != entry_id]
            if left:
                heads[cell] = left
            else:
                del heads[cell]
            superseded.append((gone[0][1], entry_id))
            changed.add(cell)
    superseded.sort()
    grid = replace(
        kept,
        cursor=now.cursor,
        last_leaf=now.last_leaf,
        created_log=now.created_log,
        heads=heads,
        superseded=[entry_id for _seq, entry_id in superseded],
        superseded_seqs=[seq for seq, _entry_id in superseded],
    )
    attendance = attendance_labels()
    line = {student.id: i for i, student in enumerate(grid.students)}
    column = {lesson.id: j for j, lesson in enumerate(grid.lessons)}
    redo: set[int] = set()
    topics = list(kept.topics)
    for cell in changed:
        layer, lesson_id, *student = cell.split(":")
        if layer == "topic":
            if int(lesson_id) in column:
                topics[column[int(lesson_id)]] = lesson_topic(
                    grid, column[int(lesson_id)], attendance
                )
        elif student and student[0].isdigit() and int(student[0]) in line:
            redo.add(line[int(student[0])])
    rows = list(kept.rows)
    for i in redo:
        rows[i] = student_row(grid, i, attendance)
    grid.rows, grid.topics = rows, topics

    term_cells = page.term_cells
    if any(cell.split(":", 1)[0] not in UNGRADED_LAYERS for cell in changed):
        term_cells = term_column(session, grid, page.rule)
        redo |= {
            i for i, (a, b) in enumerate(zip(term_cells, page.term_cells, strict=True)) if a != b
        }
    rendered = render_rows(grid, term_cells, sorted(redo))
    fragments = dict(page.fragments)
    for cell in changed:
        if cell in heads:
            fragments[cell] = head_fragment(cell, heads[cell])
        else:
            fragments.pop(cell, None)
    return replace(
        page,
        grid=grid,
        term_cells=term_cells,
        top=render_top(grid) if topics != kept.topics else page.top,
        rows=[rendered.get(i, row) for i, row in enumerate(page.rows)],
        scripts=render_scripts(grid, user, fragments),
        fragments=fragments,
    )
