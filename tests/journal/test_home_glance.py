"""Home pages, second part: the class teacher's class at a glance and falling term percents
(for the class teacher only), the admin's devices with sync gaps or quarantined entries, the
teacher's unsynced-entries section (filled by script from this browser's outbox)."""

from __future__ import annotations

import datetime as dt
import json

from auth.models import DeviceKey, RoleGrant
from journal.home.glance import falling_percents
from journal.recording.recorder import record_entry
from journal.sync import quarantine

from ..factories import Device, add_user, signed_in_client
from .test_home import _lesson, _today_with_term


def _class_teacher(world):
    user = add_user(world.session, world.school, "teacher")
    user.roles.append(RoleGrant(role="class_teacher", school_id=world.school.id))
    user.language = "en"
    world.class_group.class_teacher_id = user.id
    world.session.flush()
    return user


def _record(world, kind, **fields):
    record_entry(world.session, world.signed(kind, **fields), now=dt.datetime.now(dt.UTC))


def _section(html: str, section_id: str) -> str:
    return html.split(f'id="{section_id}"', 1)[1].split("</section>", 1)[0]


def test_the_class_at_a_glance_shows_todays_attendance_and_term_percents(app, world):
    today = _today_with_term(world)
    late = world.add_student(last_name="Кешікқан", first_name="Бота")
    present = world.add_student(last_name="Келген", first_name="Ержан")
    lesson = _lesson(world, today, 1)
    _record(world, "attendance", lesson=lesson.id, student=world.student.id, value="sick")
    _record(world, "attendance", lesson=lesson.id, student=late.id, value="late")
    _record(world, "grade", lesson=lesson.id, student=present.id, value={"score": 8})
    html = signed_in_client(app, _class_teacher(world)).get("/").get_data(as_text=True)
    glance = _section(html, "class-glance")
    assert "Present: 1 · Late: 1 · Absent from a lesson: 1" in glance
    absent = glance.split('class="glance-absent"', 1)[1].split("</ul>", 1)[0]
    assert world.student.last_name in absent and "ill" in absent
    assert present.last_name not in absent
    row = glance.split('class="data glance-subjects"', 1)[1].split("</table>", 1)[0]
    assert "Математика" in row and "<td>1</td>" in row  # one pupil has a percent


def test_a_falling_term_percent_is_listed_with_its_marks(app, world):
    today = _today_with_term(world)
    steady = world.add_student(last_name="Тұрақты", first_name="Асел")
    dipping = world.add_student(last_name="Сәл-төмен", first_name="Дана")
    # Good marks three weeks ago; the pupil's last two weeks are poor, the other's are not;
    # the third falls from 100 % to 90 %, ten points, but still has a 5: not a warning.
    for days_ago, period in ((21, 1), (20, 1)):
        lesson = _lesson(world, today - dt.timedelta(days=days_ago), period)
        for student in (world.student, steady):
            _record(world, "grade", lesson=lesson.id, student=student.id, value={"score": 9})
        _record(world, "grade", lesson=lesson.id, student=dipping.id, value={"score": 10})
    for days_ago in (5, 2):
        lesson = _lesson(world, today - dt.timedelta(days=days_ago), 1)
        _record(world, "grade", lesson=lesson.id, student=world.student.id, value={"score": 2})
        _record(world, "grade", lesson=lesson.id, student=steady.id, value={"score": 9})
        _record(world, "grade", lesson=lesson.id, student=dipping.id, value={"score": 8})
    class_teacher = _class_teacher(world)
    found = falling_percents(world.session, class_teacher, today)
    assert [item.pupil.id for item in found] == [world.student.id]
    item = found[0]
    assert item.before is not None and item.now is not None and item.before - item.now >= 10
    assert [mark for _, mark in item.marks] == ["2", "2"]

    html = signed_in_client(app, class_teacher).get("/").get_data(as_text=True)
    warnings = _section(html, "early-warnings")
    # One item for the pupil: the name once, then the subject with its evidence.
    assert warnings.count('class="pupil-attention"') == 1
    pupil = warnings.split('class="pupil-attention"', 1)[1].split("</ul>", 1)[0]
    assert world.student.last_name in pupil.split('class="falling-percent"', 1)[0]
    line = pupil.split('class="falling-percent"', 1)[1].split("</li>", 1)[0]
    assert "Математика" in line and "term percent fell from" in line
    assert (today - dt.timedelta(days=5)).strftime("%d.%m") + " 2" in line  # the evidence
    assert steady.last_name not in warnings and dipping.last_name not in warnings
    assert "fallen 10 points or more" in warnings and "a 3 or lower" in warnings  # the rule

    # Another class teacher and a parent see nothing of it.
    other = add_user(world.session, world.school, "teacher")
    other.roles.append(RoleGrant(role="class_teacher", school_id=world.school.id))
    other.language = "en"
    parent = add_user(world.session, world.school, "parent")
    parent.language = "en"
    world.session.flush()
    assert falling_percents(world.session, other, today) == []
    html = signed_in_client(app, other).get("/").get_data(as_text=True)
    assert world.student.last_name not in html and 'id="class-glance"' not in html
    html = signed_in_client(app, parent).get("/").get_data(as_text=True)
    assert world.student.last_name not in html and 'id="early-warnings"' not in html


def test_a_pupil_with_absences_and_falling_percents_is_listed_once_with_both(app, world):
    today = _today_with_term(world)
    other = world.add_student(last_name="Әбдіров", first_name="Марат")  # first in Kazakh order
    for days_ago, period in ((21, 1), (20, 1)):
        lesson = _lesson(world, today - dt.timedelta(days=days_ago), period)
        for student in (world.student, other):
            _record(world, "grade", lesson=lesson.id, student=student.id, value={"score": 10})
    for days_ago in (5, 3, 2):
        lesson = _lesson(world, today - dt.timedelta(days=days_ago), 1)
        _record(world, "grade", lesson=lesson.id, student=world.student.id, value={"score": 2})
        _record(world, "attendance", lesson=lesson.id, student=world.student.id, value="absent")
        _record(world, "grade", lesson=lesson.id, student=other.id, value={"score": 1})
    html = signed_in_client(app, _class_teacher(world)).get("/").get_data(as_text=True)
    warnings = _section(html, "early-warnings")
    items = warnings.split('class="pupil-attention"')[1:]
    assert len(items) == 2  # two pupils, each once
    assert other.last_name in items[0] and world.student.last_name in items[1]  # pupil order
    both = items[1].split("</ul>", 1)[0]
    assert both.count(world.student.last_name) == 1
    assert "3 unexcused absences in two weeks" in both and 'class="falling-percent"' in both
    assert 'class="early-warning"' not in items[0] and 'class="falling-percent"' in items[0]


def test_the_admin_sees_devices_with_gaps_and_quarantined_entries(app, world):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from journal.ledger import entry as ledger_entry

    world.teacher.full_name = "Сейітова Гүлнар"
    key = world.session.get_one(DeviceKey, world.device.kid)
    key.label = "Chrome on Android"
    _record(world, "grade")  # device_seq 0
    next(world.device.seq)  # 1 never arrives
    next(world.device.seq)  # nor 2
    _record(world, "grade", component="SOR", value={"points": 5, "max": 10})  # 3
    private_key = Ed25519PrivateKey.generate()
    alg, raw = ledger_entry.public_key_bytes(private_key.public_key())
    stranger = Device(ledger_entry.key_id(alg, raw), alg, private_key, world.teacher.id)
    quarantine(world.session, world.teacher, world.signed("grade", device=stranger), "unknown_key")
    admin = add_user(world.session, world.school, "school_admin")
    admin.language = "en"
    world.session.flush()

    html = signed_in_client(app, admin).get("/").get_data(as_text=True)
    section = _section(html, "devices")
    rows = section.split('class="device-problem"')[1:]
    assert len(rows) == 2
    gap = next(row for row in rows if "Chrome on Android" in row)
    assert "Сейітова Гүлнар" in gap and "Entries numbered 1–2 never arrived." in gap
    kept = next(row for row in rows if "a device not yet enrolled" in row)
    assert "1 entries kept aside" in kept and "confirm the second factor" in kept

    teacher_html = signed_in_client(app, world.teacher).get("/").get_data(as_text=True)
    assert 'id="devices"' not in teacher_html


def test_the_teachers_home_names_the_journals_for_the_outbox_script(app, world):
    today = _today_with_term(world)
    lesson = _lesson(world, today, 2)
    world.teacher.language = "en"
    html = signed_in_client(app, world.teacher).get("/").get_data(as_text=True)
    section = html.split('id="outbox-waiting"', 1)[1].split(">", 1)[0]
    assert " hidden" in section  # nothing is claimed without the script
    places = json.loads(
        html.split('id="outbox-places">', 1)[1].split("</script>", 1)[0].replace("&#34;", '"')
    )
    assert places["author"] == world.teacher.id
    journal = places["journals"][world.log.origin]
    assert journal["class"] == world.class_group.name
    assert places["lessons"][str(lesson.id)] == world.subject.id
    assert "/teacher/grid/" in journal["subjects"][str(world.subject.id)]["url"]
    assert 'src="/static/grid/outbox-count.js"' in html
