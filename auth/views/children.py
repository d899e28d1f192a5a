"""A parent's or student's read-only view of their own child."""

from __future__ import annotations

from typing import Any

from flask import (
    jsonify,
    render_template,
)

from journal.db import db

from .. import services
from ..access import (
    login_required,
    personal_data,
    roles_required,
)
from . import _user, bp

# -- a parent's or student's own child -----------------------------------------------------------
# The portal (journal.portal) is the full read-only view; these pages are the minimal one.


@bp.get("/account/children")
@roles_required("parent", "student")
@personal_data("student_list")
def children() -> Any:
    return render_template("auth/children.html", children=services.children(db.session, _user()))


@bp.get("/account/children/<int:student_id>")
@login_required
@personal_data("student", "student_id")
def child_record(student_id: int) -> Any:
    record = services.student_record(db.session, _user(), student_id)
    return render_template("auth/child_record.html", record=record)


@bp.get("/api/account/children/<int:student_id>/grades")
@login_required
@personal_data("student", "student_id")
def api_child_record(student_id: int) -> Any:
    record = services.student_record(db.session, _user(), student_id)
    return jsonify(
        student={"id": record.student_id, "name": record.name},
        entries=[
            {
                "date": line.date.isoformat() if line.date else None,
                "subject": line.subject,
                "kind": line.kind,
                "component": line.component,
                "value": line.value,
                "corrects": line.corrects,
                "reason": line.reason,
                "superseded": line.superseded,
            }
            for line in record.lines
        ],
    )
