"""The grid page kept and patched per worker (journal.grid.pages) is the page a full build gives.

Two apps on one database stand for two worker processes: each keeps its own copies, and both
must show, after every step of new entries, corrections, voids and conflicts, byte for byte the
page a third app with nothing kept builds from scratch.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, current_app, render_template, render_template_string
from markupsafe import Markup

from journal.db import db
from journal.grid import pages
from journal.grid import views as grid_views
from journal.grid.strings import grid_strings
from journal.models import Lesson
from journal.recording.recorder import Recorder

from ..conftest import make_app
from ..factories import NOW, build_world, signed_in_client

# A CSRF token (signed, with its time) differs from one response to the next.
CSRF = re.compile(r'(content|value)="[\w-]+\.[\w-]+\.[\w-]+"')


@pytest.fixture
def workers(fresh_app: Flask, tmp_path: Path) -> Iterator[list[Flask]]:
    """Two more apps on ``fresh_app``'s database (workers "a" and "b") and a third whose kept
    pages are dropped before every request (a full build)."""
    apps = [
        make_app(fresh_app.config["DATABASE_URL"], Path(fresh_app.config["KEYS_DIR"]))
        for _ in range(3)
    ]
    yield apps
    for app in apps:
        app.extensions["journal_db"].engine.dispose()


def test_kept_and_patched_grids_are_the_pages_a_full_build_gives(
    fresh_app: Flask, workers: list[Flask], monkeypatch: pytest.MonkeyPatch
) -> None:
    builds: list[int] = []
    real_build = pages.build

    def counted_build(*args: Any, **kwargs: Any) -> pages.GridPage:
        builds.append(1)
        return real_build(*args, **kwargs)

    monkeypatch.setattr(pages, "build", counted_build)
    first, second, fresh = workers
    real_page = grid_views.grid_page

    def page_of(grid: Any, user: Any, body: Any) -> str:
        # The fresh app renders the whole template: the kept shell with the token and body
        # spliced in must be the same page.
        if current_app._get_current_object() is fresh:  # type: ignore[attr-defined]
            html = Markup(body.decode())  # noqa: S704 - rendered by autoescaping templates
            return render_template("teacher/grid.html", grid=grid, body=html)
        return real_page(grid, user, body)

    monkeypatch.setattr(grid_views, "grid_page", page_of)
    real_scripts = pages.render_scripts

    def scripts_of(grid: Any, user: Any, fragments: Any) -> str:
        # ... and its scripts from their template, the state not spliced into a kept copy.
        if current_app._get_current_object() is fresh:  # type: ignore[attr-defined]
            return current_app.jinja_env.get_template("teacher/grid_scripts.html").render(
                state_json=pages.state_json(grid, user, fragments), strings=grid_strings()
            )
        return real_scripts(grid, user, fragments)

    monkeypatch.setattr(pages, "render_scripts", scripts_of)
    with fresh_app.app_context():
        world = build_world(db.session, fresh_app.config["KEYS_DIR"])
        other = world.add_student(last_name="Әбілқайыр", first_name="Ұлан")
        later = Lesson(
            class_group_id=world.class_group.id,
            subject_id=world.subject.id,
            date=world.lesson.date,
            period=3,
        )
        db.session.add(later)
        db.session.flush()
        clients = {
            name: signed_in_client(app, world.teacher)
            for name, app in (("a", first), ("b", second), ("fresh", fresh))
        }
        url = f"/teacher/grid/{world.class_group.id}/{world.subject.id}/{world.q2.id}"
        db.session.commit()

        def record(*entries: dict) -> None:
            recorder = Recorder(db.session, now=NOW)
            for entry in entries:
                assert recorder.record(entry).status == "accepted"
            db.session.commit()

        def page(name: str) -> str:
            if name == "fresh":
                fresh.extensions.pop("journal.rendered_grids", None)
            response = clients[name].get(url)
            assert response.status_code == 200
            return CSRF.sub(r"\1='token'", response.get_data(as_text=True))

        def same_everywhere(*names: str) -> str:
            built = page("fresh")
            for name in names:
                assert page(name) == built, name
            return built

        same_everywhere("a", "b")
        builds.clear()

        grade = world.signed("grade", value={"score": 7})
        record(grade, world.signed("attendance", value="late", lesson=later.id))
        html = same_everywhere("a", "b")
        assert '<span class="v v-FO" data-state="synced">7</span>' in html
        assert len(builds) == 1  # the fresh app's: both workers patched their copies

        record(
            world.signed("topic", topic="Бөлшектер <1/2> & 'x'"),
            world.signed(
                "grade", component="SOR", value={"points": 6, "max": 10}, student=other.id
            ),
        )
        assert same_everywhere("a") == page("b")  # "b" catches up in one patch later

        # A correction, then a void of the corrected value, then a conflict on another cell.
        corrected = world.signed(
            "correction",
            corrects="grade",
            component="FO",
            value={"score": 9},
            supersedes=[grade["payload"]["entry_id"]],
            reason="Қате жазылды",
        )
        record(corrected)
        html = same_everywhere("a")
        assert '<span class="v v-FO" data-state="synced">9</span>' in html
        record(
            world.signed(
                "correction",
                corrects="grade",
                component="FO",
                value="void",
                supersedes=[corrected["payload"]["entry_id"]],
                reason="Басқа оқушы",
            ),
            world.signed("attendance", value="absent", student=other.id),
            world.signed("attendance", device=world.add_device(), value="sick", student=other.id),
        )
        db.session.commit()  # the new device key
        html = same_everywhere("b", "a")
        assert 'data-state="conflict"' in html
        assert re.search(r'<span class="v v-FO" data-state="synced" title="[^"]+"></span>', html)
        assert len(builds) == 4  # only the fresh app ever built again

        # The state spliced from kept fragments is what the tojson filter writes for it.
        state = html.split('id="grid-state">', 1)[1].split("</script>", 1)[0]
        assert json.loads(state)["heads"]
        assert render_template_string("{{ state|tojson }}", state=json.loads(state)) == state

        # A new pupil changes the frame: every worker builds anew, and agrees.
        world.add_student(last_name="Жаңабай", first_name="Әсел")
        db.session.commit()
        assert "Жаңабай Әсел" in same_everywhere("a", "b")
        assert len(builds) == 7
