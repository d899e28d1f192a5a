"""The inspector's page: upload a bag (zip or tar) or a printout, read the same report as
``journal-verify``; nothing but an access-log row is written."""

from __future__ import annotations

import html
import io
import re
import zipfile

import pytest
from sqlalchemy import func, select
from werkzeug.datastructures import FileStorage, MultiDict
from werkzeug.test import encode_multipart

from archive.verify.verify import verify_bag_files
from auth.models import AccessLogEntry
from journal.ledger import note
from tests.archive.sample_bag import SampleBag, build_sample_bag
from tests.archive.services import ServiceUnavailable
from tests.auth.conftest import csrf_token, sign_in
from tests.external import missing

from ..factories import add_user

URL = "/archive/verify"


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> SampleBag:
    try:
        return build_sample_bag(tmp_path_factory.mktemp("inspector") / "bag")
    except ServiceUnavailable as exc:
        missing(str(exc))
        raise


@pytest.fixture(scope="module")
def bag_zip(sample: SampleBag) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in sample.files().items():
            archive.writestr(f"{sample.path.name}/{name}", data)
    return out.getvalue()


@pytest.fixture
def inspector(app, world):  # type: ignore[no-untyped-def]
    client = app.test_client()
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"
    user = add_user(world.session, world.school, "inspector")
    sign_in(client, user)
    return client


def upload(client, app, data: bytes, name: str, vkey: str):  # type: ignore[no-untyped-def]
    # Encoded here, in memory: the test client spools large bodies to a file it never closes.
    fields = {"csrf_token": csrf_token(client, app), "vkey": vkey}
    boundary, body = encode_multipart(
        MultiDict([*fields.items(), ("file", FileStorage(io.BytesIO(data), name))])
    )
    return client.post(URL, data=body, content_type=f"multipart/form-data; boundary={boundary}")


def access_rows(session) -> int:  # type: ignore[no-untyped-def]
    return session.scalar(select(func.count()).select_from(AccessLogEntry))


def text_of(page: str) -> str:
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", page)))


def test_form_offers_the_schools_published_key(app, world, inspector):
    response = inspector.get(URL)
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert f'value="{world.school.log_vkey}"' in html
    assert 'enctype="multipart/form-data"' in html and 'name="csrf_token"' in html


def test_a_good_bag_reports_ok_and_logs_the_access(app, session, inspector, sample, bag_zip):
    before = access_rows(session)
    response = upload(inspector, app, bag_zip, "journal-7a-q2.zip", sample.vkey)
    assert response.status_code == 200
    page = text_of(response.get_data(as_text=True))
    assert "Everything checked holds." in page
    for title in ("BagIt structure and manifests", "Seal by the school's key", "RFC 3161"):
        assert title in page
    assert "60 entries" in page and "RESULT: OK" in page
    assert access_rows(session) == before + 1
    row = session.scalars(select(AccessLogEntry).order_by(AccessLogEntry.id.desc())).first()
    assert row.action == "archive.verify_upload" and row.target_type == "upload"


def test_a_tampered_bag_says_what_and_where(app, inspector, sample, bag_zip):
    files = sample.files()
    leaves = files["data/entries.jsonl"].split(b"\n")
    leaves[3] = leaves[3].replace(b'"kind":"grade"', b'"kind":"grada"', 1)
    files["data/entries.jsonl"] = b"\n".join(leaves)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    response = upload(inspector, app, out.getvalue(), "tampered.zip", sample.vkey)
    assert response.status_code == 200
    page = text_of(response.get_data(as_text=True))
    assert "Verification failed." in page
    assert "First failure: BagIt structure and manifests: data/entries.jsonl" in page
    assert "data/entries.jsonl line 4 (seq 3): the signature does not match the entry" in page


def test_a_printout_alone(app, inspector, sample):
    pdf = sample.files()["data/printouts/journal-q2.pdf"]
    response = upload(inspector, app, pdf, "journal-q2.pdf", sample.vkey)
    page = text_of(response.get_data(as_text=True))
    assert "Everything checked holds." in page
    assert "Printout: signatures and embedded records" in page
    assert "40 embedded records (seq 0..39) hash to the signed checkpoint" in page


def test_the_key_comes_from_the_inspector(app, session, inspector, sample, bag_zip):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    other = note.vkey("school7.example.kz", Ed25519PrivateKey.generate().public_key())
    page = text_of(upload(inspector, app, bag_zip, "bag.zip", other).get_data(as_text=True))
    assert "Verification failed." in page and "not the key given with --vkey" in page

    before = access_rows(session)
    response = upload(inspector, app, bag_zip, "bag.zip", "/etc/passwd")
    assert response.status_code == 400
    assert "This is not a verifier key" in response.get_data(as_text=True)
    assert access_rows(session) == before  # nothing verified, nothing logged


def test_bad_uploads_get_a_clear_answer(app, inspector, sample):
    response = upload(inspector, app, b"not a zip at all", "x.zip", sample.vkey)
    assert response.status_code == 200
    page = text_of(response.get_data(as_text=True))
    assert "not a readable zip or tar file" in page

    evil = io.BytesIO()
    with zipfile.ZipFile(evil, "w") as archive:
        archive.writestr("bagit.txt", b"")
        archive.writestr("../../outside.txt", b"x")
    page = text_of(upload(inspector, app, evil.getvalue(), "evil.zip", sample.vkey).get_data(True))
    assert "unsafe file name '../../outside.txt'" in page

    token = csrf_token(inspector, app)
    response = inspector.post(URL, data={"csrf_token": token, "vkey": sample.vkey})
    assert response.status_code == 400
    assert "Choose a file and give the school's key." in text_of(response.get_data(True))


def test_the_form_needs_its_csrf_token(app, session, inspector, sample, bag_zip):
    before = access_rows(session)
    boundary, body = encode_multipart(
        MultiDict([("vkey", sample.vkey), ("file", FileStorage(io.BytesIO(bag_zip), "bag.zip"))])
    )
    response = inspector.post(
        URL, data=body, content_type=f"multipart/form-data; boundary={boundary}"
    )
    assert response.status_code == 400
    assert "The form has expired." in text_of(response.get_data(True))
    assert "Everything checked holds." not in text_of(response.get_data(True))
    assert access_rows(session) == before


def test_uploads_over_the_limit_are_refused(app, inspector, sample, bag_zip):
    app.config["ARCHIVE_INSPECT_MAX_UPLOAD"] = 1024
    try:
        response = upload(inspector, app, bag_zip, "bag.zip", sample.vkey)
    finally:
        app.config.pop("ARCHIVE_INSPECT_MAX_UPLOAD")
    assert response.status_code == 413
    page = text_of(response.get_data(as_text=True))
    assert "The file is larger than 1 KB, the most this page accepts." in page


def test_bags_larger_than_the_apps_form_limit_are_accepted(app, inspector, sample):
    """The app refuses bodies over MAX_CONTENT_LENGTH (16 MB); packages are bigger."""
    files = sample.files()
    files["data/printouts/padding.bin"] = bytes(17 * 1024 * 1024)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    assert len(out.getvalue()) > app.config["MAX_CONTENT_LENGTH"]
    response = upload(inspector, app, out.getvalue(), "big.zip", sample.vkey)
    assert response.status_code == 200
    page = text_of(response.get_data(as_text=True))
    assert "data/printouts/padding.bin: is not listed in manifest-sha512.txt" in page


@pytest.mark.parametrize(("role", "status"), [("school_admin", 200), ("teacher", 403)])
def test_who_may_use_it(app, world, role, status):
    client = app.test_client()
    sign_in(client, add_user(world.session, world.school, role))
    assert client.get(URL).status_code == status


def test_the_report_escapes_what_the_package_says(app, inspector, sample):
    files = sample.files()
    files["data/printouts/<script>alert(1)</script>.pdf"] = b"%PDF-1.7 nothing"
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    page = upload(inspector, app, out.getvalue(), "<b>x</b>.zip", sample.vkey).get_data(True)
    assert "<script>alert(1)</script>" not in page and "<b>x</b>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_same_report_as_the_command_line(app, inspector, sample, bag_zip):
    from archive.verify.verify import read_vkey

    expected = verify_bag_files(sample.files(), read_vkey(sample.vkey))
    page = text_of(upload(inspector, app, bag_zip, "bag.zip", sample.vkey).get_data(as_text=True))
    for check in expected.checks:
        for line in check.notes:
            assert " ".join(line.split()) in page, line
