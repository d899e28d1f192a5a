"""Signed PDF/A-3b journals and ledgers, checked with the tools an inspector has: poppler's pdfsig,
pdftotext and pdftoppm, qpdf, pikepdf (and pikepdf's PDF/A validator when its extras are there)."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import io
import re
import subprocess
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pikepdf
import pytest
import segno
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from exports.documents import (
    JournalDocument,
    LedgerDocument,
    LedgerRow,
    LessonColumn,
    ProofBundle,
    StudentRow,
    SubjectSheet,
    attendance_mark,
    cell_text,
    grade_mark,
)
from exports.pdf import (
    PdfSigner,
    extract_embedded_files,
    qr_text,
    render_journal_pdf,
    render_ledger_pdf,
    srgb_icc_profile,
)
from tests.external import missing, need_tool

KAZAKH_LETTERS = "әғқңөұүһіӘҒҚӨҰҮҺІ"  # no Kazakh word starts with ң
STUDENTS = (
    "Әлібек Нұрлан",
    "Қанат Өмірзақ",
    "Ұлжан Үсенова",
    "Һадиша Ілиясова",
    "Іңкәр Ғалымжанқызы",
    "Шаһизада Жаңғырова",
    "Төлеген Бөкейхан",
)
GENERATED = dt.datetime(2025, 12, 26, 15, 30, tzinfo=dt.timezone(dt.timedelta(hours=5)))
ORIGIN = "school17.example.kz/journal/2025-2026/7a"


# --- sample documents ---------------------------------------------------------------------


def make_proof() -> ProofBundle:
    root = bytes(range(7, 39))
    note = f"{ORIGIN}\n1234\n{base64.b64encode(root).decode()}\n\n— school17.example.kz AbCd=\n"
    return ProofBundle(
        origin=ORIGIN,
        tree_size=1234,
        root_hash=root,
        checkpoint_note=note,
        vkey="school17.example.kz+0a1b2c3d+AQIDBA==",
        entries_jsonl=b'{"seq":0,"payload":{"kind":"grade"}}\n{"seq":1,"payload":{"kind":"topic"}}\n',
        tlog_proofs=(("student-0042.tlog-proof", "c2sp.org/tlog-proof@v1\nindex 42\n"),),
        extra_files=(("device-keys.json", b'{"k1": {"alg": "ed25519"}}'),),
    )


def lessons(count: int, start: dt.date = dt.date(2025, 11, 3)) -> tuple[LessonColumn, ...]:
    return tuple(
        LessonColumn(
            start + dt.timedelta(days=i),
            f"Сабақ {i + 1}: сызықтық теңдеулер жүйесі",
            f"§{i + 1}, №{i + 10}",
        )
        for i in range(count)
    )


def cells_for(student: int, count: int) -> tuple[tuple[str, ...], ...]:
    """A deterministic mix: absences, FO scores, SOR results, two marks on one day (an FO and a
    SOR on the same day is rare in real journals, and makes its row taller: once per sheet)."""
    out: list[tuple[str, ...]] = []
    for lesson in range(count):
        k = (student * 7 + lesson * 3) % 11
        if (student, lesson) == (1, 2):
            out.append(
                (grade_mark("FO", {"score": 8}), grade_mark("SOR", {"points": 9, "max": 10}))
            )
        elif k == 0:
            out.append((attendance_mark("absent"),))
        elif k == 1:
            out.append((attendance_mark("sick"),))
        elif k == 2:
            out.append((grade_mark("SOR", {"points": 12, "max": 15}),))
        elif k in (3, 4, 5, 6):
            out.append((grade_mark("FO", {"score": 1 + (student + lesson) % 10}),))
        elif k == 7:
            out.append((attendance_mark("late"), grade_mark("FO", {"score": 7})))
        else:
            out.append(())
    return tuple(out)


def make_sheet(subject: str, n_lessons: int, names: tuple[str, ...] = STUDENTS) -> SubjectSheet:
    rows = tuple(
        StudentRow(name, cells_for(i, n_lessons), f"{60 + i * 5}.{i}", str(2 + i % 4))
        for i, name in enumerate(names)
    )
    return SubjectSheet(subject, "Сәуле Қайратқызы", lessons(n_lessons), rows)


def make_journal(**changes: object) -> JournalDocument:
    doc = JournalDocument(
        school_name="№ 17 жалпы білім беретін мектеп-гимназиясы",
        class_name="7Ә",
        school_year="2025-2026",
        quarter=2,
        generated_at=GENERATED,
        subjects=(make_sheet("Алгебра", 20), make_sheet("Қазақ әдебиеті", 45)),
        proof=make_proof(),
    )
    return dataclasses.replace(doc, **changes)  # type: ignore[arg-type]


LEDGER_SUBJECTS = (
    "Алгебра",
    "Геометрия",
    "Қазақ тілі",
    "Қазақ әдебиеті",
    "Орыс тілі мен әдебиеті",
    "Ағылшын тілі",
    "Физика",
    "Химия",
    "Биология",
    "География",
    "Қазақстан тарихы",
    "Дене шынықтыру",
)


def make_ledger() -> LedgerDocument:
    rows = []
    for i, name in enumerate(STUDENTS):
        grades = {
            subject: (
                str(2 + (i + s) % 4),
                str(3 + (i + s) % 3),
                str(2 + (i * s) % 4),
                str(3 + (i + 2 * s) % 3),
                str(3 + (i + s) % 3),
            )
            for s, subject in enumerate(LEDGER_SUBJECTS)
        }
        rows.append(LedgerRow(name, grades, absences_total=10 + i, absences_sick=i))
    return LedgerDocument(
        "№ 17 жалпы білім беретін мектеп-гимназиясы",
        "7Ә",
        "2025-2026",
        LEDGER_SUBJECTS,
        tuple(rows),
        make_proof(),
        generated_at=GENERATED,
    )


# --- a throwaway PKI -----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Pki:
    ca_pem: bytes
    signer: PdfSigner
    tsa_key_pem: bytes
    tsa_cert_pem: bytes


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Мектеп 17 (test)"),
        ]
    )


def _pem_key(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _issue(
    ca_key: rsa.RSAPrivateKey,
    ca_cert: x509.Certificate | None,
    subject: str,
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey,
    *,
    is_ca: bool = False,
    eku: list[x509.ObjectIdentifier] | None = None,
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(ca_cert.subject if ca_cert else _name(subject))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=not is_ca,
                content_commitment=not is_ca,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=is_ca,
                crl_sign=is_ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    )
    if eku:
        builder = builder.add_extension(x509.ExtendedKeyUsage(eku), critical=True)
    return builder.sign(ca_key, hashes.SHA256())


@pytest.fixture(scope="module")
def pki() -> Pki:
    ca_key = rsa.generate_private_key(65537, 3072)
    ca = _issue(ca_key, None, "Test school CA", ca_key, is_ca=True)
    key = rsa.generate_private_key(65537, 3072)
    cert = _issue(ca_key, ca, "Мектеп 17 мөрі", key)
    tsa_key = rsa.generate_private_key(65537, 3072)
    tsa = _issue(ca_key, ca, "Test TSA", tsa_key, eku=[ExtendedKeyUsageOID.TIME_STAMPING])
    pem = serialization.Encoding.PEM
    return Pki(
        ca_pem=ca.public_bytes(pem),
        signer=PdfSigner(_pem_key(key), cert.public_bytes(pem), (ca.public_bytes(pem),)),
        tsa_key_pem=_pem_key(tsa_key),
        tsa_cert_pem=tsa.public_bytes(pem),
    )


@pytest.fixture(scope="module")
def signed_journal(pki: Pki) -> bytes:
    return render_journal_pdf(make_journal(), pki.signer)


@pytest.fixture(scope="module")
def signed_ledger(pki: Pki) -> bytes:
    return render_ledger_pdf(make_ledger(), pki.signer)


# --- tool helpers ---------------------------------------------------------------------------


def write(tmp_path: Path, data: bytes, name: str = "doc.pdf") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def run(*args: str | Path) -> str:
    done = subprocess.run([str(a) for a in args], capture_output=True, check=False, timeout=120)
    return done.stdout.decode("utf-8", "replace") + done.stderr.decode("utf-8", "replace")


def pdftotext(path: Path, *options: str) -> str:
    need_tool("pdftotext")
    done = subprocess.run(
        ["pdftotext", "-enc", "UTF-8", *options, str(path), "-"],
        capture_output=True,
        check=True,
        timeout=120,
    )
    return done.stdout.decode("utf-8")


def pages_text(path: Path) -> list[str]:
    pages = pdftotext(path, "-layout").split("\f")
    return pages[:-1] if pages and not pages[-1].strip() else pages


# --- signatures ---------------------------------------------------------------------------


def test_pdfsig_reports_a_valid_pades_signature(tmp_path: Path, signed_journal: bytes):
    need_tool("pdfsig")
    out = run("pdfsig", write(tmp_path, signed_journal))
    assert "Signature #1" in out and "Signature #2" not in out
    assert "Signature is Valid." in out, out
    assert "ETSI.CAdES.detached" in out
    assert "Total document signed" in out
    assert "Мектеп 17 мөрі" in out


def test_one_changed_byte_in_the_signed_range_breaks_the_signature(
    tmp_path: Path, signed_journal: bytes
):
    need_tool("pdfsig")
    marker = b"<xmp:CreatorTool>class-journal"
    at = signed_journal.index(marker) + len(marker) - 1  # first revision, inside /ByteRange
    tampered = bytearray(signed_journal)
    tampered[at] ^= 0x20
    out = run("pdfsig", write(tmp_path, bytes(tampered)))
    assert "Signature is Valid." not in out, out
    assert "Digest Mismatch." in out or "Invalid" in out, out


def test_signer_must_be_rsa(pki: Pki):
    key = ec.generate_private_key(ec.SECP256R1())
    ca_key = serialization.load_pem_private_key(pki.signer.key_pem, password=None)
    assert isinstance(ca_key, rsa.RSAPrivateKey)
    cert = _issue(ca_key, None, "EC signer", key)
    signer = PdfSigner(_pem_key(key), cert.public_bytes(serialization.Encoding.PEM))
    with pytest.raises(ValueError, match="RSA"):
        render_journal_pdf(make_journal(subjects=()), signer)


def test_document_timestamp_is_added_and_keeps_pdfa(tmp_path: Path, pki: Pki):
    need_tool("pdfsig")
    from pyhanko.keys import load_certs_from_pemder_data, load_private_key_from_pemder_data
    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.sign.timestamps import DummyTimeStamper
    from pyhanko.sign.validation import validate_pdf_signature, validate_pdf_timestamp
    from pyhanko_certvalidator import ValidationContext

    tsa_cert = next(iter(load_certs_from_pemder_data(pki.tsa_cert_pem)))
    timestamper = DummyTimeStamper(
        tsa_cert=tsa_cert, tsa_key=load_private_key_from_pemder_data(pki.tsa_key_pem, None)
    )
    data = render_journal_pdf(
        make_journal(subjects=(make_sheet("Алгебра", 5),)), pki.signer, timestamper
    )

    out = run("pdfsig", write(tmp_path, data))
    assert "Signature #1" in out and "Signature is Valid." in out
    assert "DocumentTimestamp" in out

    ca = next(iter(load_certs_from_pemder_data(pki.ca_pem)))
    reader = PdfFileReader(io.BytesIO(data))
    signature, timestamp = reader.embedded_signatures
    status = validate_pdf_signature(signature, ValidationContext(trust_roots=[ca]))
    assert status.intact and status.valid and status.trusted
    ts_status = validate_pdf_timestamp(timestamp, ValidationContext(trust_roots=[ca]))
    assert ts_status.intact and ts_status.valid and ts_status.trusted
    assert data.startswith(b"%PDF-1.7")
    assert_pdfa3b(data)


# --- text, layout, pages --------------------------------------------------------------------


def test_text_keeps_kazakh_names_and_every_mark(tmp_path: Path, signed_journal: bytes):
    text = pdftotext(write(tmp_path, signed_journal))
    for name in STUDENTS:
        assert name in text
    assert set(KAZAKH_LETTERS) <= set(text)
    for token in ("н", "б", "оп", "СОР", "12/15", "9/10", "Сәуле Қайратқызы", "Қазақ әдебиеті"):
        assert token in text
    for sheet in make_journal().subjects:
        for row in sheet.rows:
            assert row.term_percent in text
            for marks in row.cells:
                for mark in marks:
                    for word in mark.split():
                        assert word in text
        for lesson in sheet.lessons:
            assert lesson.date.strftime("%d.%m") in text
            assert lesson.topic in text.replace("\n", " ") or lesson.topic.split(":")[0] in text


def test_grid_has_one_row_per_student_on_page_one(tmp_path: Path, signed_journal: bytes):
    first = pages_text(write(tmp_path, signed_journal))[0]
    for number, name in enumerate(STUDENTS, 1):
        lines = [line for line in first.splitlines() if name in line]
        assert len(lines) == 1, (name, lines)
        assert re.match(rf"\s*{number}\s+{re.escape(name)}", lines[0])
    assert "Класс 7Ә" in first and "Предмет: Алгебра" in first
    assert "Учитель: Сәуле Қайратқызы" in first
    assert "2025-2026 учебный год" in first and "2 четверть" in first
    assert "Темы уроков" in first  # a short class: the topics start under the grid


def test_every_page_has_footer_checkpoint_and_body(tmp_path: Path, signed_journal: bytes):
    pages = pages_text(write(tmp_path, signed_journal))
    root_b64 = base64.b64encode(make_proof().root_hash).decode()
    assert len(pages) >= 3
    for number, page in enumerate(pages, 1):
        assert f"Страница {number} из {len(pages)}" in page
        assert ORIGIN in page and "1234" in page and root_b64 in page
        body = page.split("Журнал (лог)")[0]
        assert any(name in body for name in STUDENTS) or "Сабақ" in body, f"empty page {number}"


def test_checkpoint_qr_code_on_every_page_matches_segno(signed_journal: bytes):
    proof = make_proof()
    body = f"{proof.origin}\n{proof.tree_size}\n{base64.b64encode(proof.root_hash).decode()}\n"
    _assert_qr_holds(signed_journal, body)


def test_the_qr_code_holds_the_check_page_with_the_checkpoint():
    proof = make_proof()
    url = "https://journal.example.kz/check"
    data = render_journal_pdf(make_journal(), language="kk", check_url=url)
    text = qr_text(proof, url)
    assert text.startswith(f"{url}?o=")
    query = parse_qs(urlsplit(text).query)
    root = base64.urlsafe_b64decode(query["r"][0] + "=" * (-len(query["r"][0]) % 4))
    assert (query["o"][0], int(query["s"][0]), root) == (
        proof.origin,
        proof.tree_size,
        proof.root_hash,
    )
    _assert_qr_holds(data, text)


def _assert_qr_holds(data: bytes, body: str) -> None:
    expected = [list(row) for row in segno.make(body, error="m", micro=False).matrix]
    with pikepdf.open(io.BytesIO(data)) as pdf:
        forms = set()
        for page in pdf.pages:
            xobjects = page.Resources.XObject
            names = [k for k in xobjects if "checkpointQR" in str(k)]
            assert names, "page without the checkpoint QR code"
            forms.add(xobjects[names[0]].objgen)
        assert len(forms) == 1  # one form XObject, reused
        form = xobjects[names[0]]
        rects = [
            [float(v) for v in operands]
            for operands, operator in pikepdf.parse_content_stream(form)
            if str(operator) == "re"
        ]
    size = len(expected)
    unit = float(form.BBox[2]) / (size + 8)
    drawn = [[0] * size for _ in range(size)]
    for x, y, w, _ in rects:
        row = round((float(form.BBox[3]) - y) / unit) - 5
        start = round(x / unit) - 4
        for col in range(start, start + round(w / unit)):
            drawn[row][col] = 1
    assert drawn == expected


def test_many_lessons_split_into_column_pages_repeating_names(tmp_path: Path):
    names = tuple(f"{STUDENTS[i % len(STUDENTS)]} {i}" for i in range(30))
    doc = make_journal(subjects=(make_sheet("Физика", 60, names),), proof=None)
    pages = pages_text(write(tmp_path, render_journal_pdf(doc)))
    grid_pages = [p for p in pages if "Фамилия, имя ученика" in p]
    assert len(grid_pages) == 3  # 60 lessons -> 3 x 20 columns, 30 students fit one page
    seen_dates: set[str] = set()
    headers = []
    for page in grid_pages:
        header = next(line for line in page.splitlines() if "Фамилия, имя ученика" in line)
        headers.append(header)
        dates = re.findall(r"\d\d\.\d\d", header)
        assert 0 < len(dates) <= 25
        seen_dates.update(dates)
        for name in names:
            assert sum(1 for line in page.splitlines() if re.search(rf"{name}(\s|$)", line)) == 1
    assert seen_dates == {lesson.date.strftime("%d.%m") for lesson in doc.subjects[0].lessons}
    assert "%" in headers[-1] and "Оц." in headers[-1]  # term columns on the last one only
    assert "Оц." not in headers[0] and "Оц." not in headers[1]


def test_large_class_rows_split_with_repeated_header(tmp_path: Path):
    names = tuple(f"{STUDENTS[i % len(STUDENTS)]} {i}" for i in range(44))
    doc = make_journal(subjects=(make_sheet("Химия", 10, names),), proof=None)
    pages = pages_text(write(tmp_path, render_journal_pdf(doc)))
    grid_pages = [p for p in pages if "Фамилия, имя ученика" in p]
    assert len(grid_pages) == 2
    counts = [sum(1 for n in names if re.search(rf"{n}(\s|$)", p)) for p in grid_pages]
    assert counts == [22, 22]  # balanced, no stub page


def test_first_page_is_not_blank(tmp_path: Path, signed_journal: bytes):
    need_tool("pdftoppm")
    done = subprocess.run(
        [
            "pdftoppm",
            "-r",
            "50",
            "-f",
            "1",
            "-l",
            "1",
            "-gray",
            str(write(tmp_path, signed_journal)),
        ],
        capture_output=True,
        check=True,
        timeout=60,
    )
    width, height, pixels = parse_pgm(done.stdout)
    assert width == 585 and height in (413, 414)  # A4 landscape at 50 dpi
    dark = sum(1 for p in pixels if p < 128)
    assert dark > 0.01 * width * height


def parse_pgm(data: bytes) -> tuple[int, int, bytes]:
    """Binary PGM (P5): magic, width, height, maxval, then one byte per pixel."""
    fields: list[bytes] = []
    pos = 0
    while len(fields) < 4:
        while data[pos : pos + 1].isspace():
            pos += 1
        if data[pos : pos + 1] == b"#":
            pos = data.index(b"\n", pos) + 1
            continue
        end = pos
        while not data[end : end + 1].isspace():
            end += 1
        fields.append(data[pos:end])
        pos = end
    assert fields[0] == b"P5" and fields[3] == b"255"
    width, height = int(fields[1]), int(fields[2])
    pixels = data[pos + 1 : pos + 1 + width * height]
    assert len(pixels) == width * height
    return width, height, pixels


def test_unsigned_output_is_deterministic():
    assert render_journal_pdf(make_journal()) == render_journal_pdf(make_journal())
    assert render_ledger_pdf(make_ledger()) == render_ledger_pdf(make_ledger())


def test_kazakh_labels(tmp_path: Path):
    data = render_journal_pdf(make_journal(), language="kk")
    text = pdftotext(write(tmp_path, data))
    for label in ("Сынып 7Ә", "Пән: Алгебра", "Мұғалім", "2-тоқсан", "Сабақ тақырыптары", "1-бет"):
        assert label in text


def test_unknown_language_is_refused():
    with pytest.raises(ValueError, match="language"):
        render_journal_pdf(make_journal(), language="en")


def test_empty_journal_still_renders_one_page(tmp_path: Path):
    data = render_journal_pdf(make_journal(subjects=(), proof=None))
    with pikepdf.open(io.BytesIO(data)) as pdf:
        assert len(pdf.pages) == 1
    assert "Нет предметов" in pdftotext(write(tmp_path, data))


# --- PDF/A-3b, fonts, embedded files ------------------------------------------------------


def test_qpdf_check_is_clean(tmp_path: Path, signed_journal: bytes, signed_ledger: bytes):
    need_tool("qpdf")
    for name, data in (("j.pdf", signed_journal), ("l.pdf", signed_ledger)):
        done = subprocess.run(
            ["qpdf", "--check", str(write(tmp_path, data, name))],
            capture_output=True,
            check=False,
            timeout=60,
        )
        out = done.stdout.decode() + done.stderr.decode()
        assert done.returncode == 0, out
        assert "No syntax or stream encoding errors found" in out
        assert "WARNING" not in out


def test_pdfa_3b(signed_journal: bytes, signed_ledger: bytes):
    assert_pdfa3b(signed_journal)
    assert_pdfa3b(signed_ledger)
    assert_pdfa3b(render_journal_pdf(make_journal()))


def test_pikepdf_pdfa_validator():
    try:
        from pikepdf import pdfa
    except ImportError as exc:
        missing(f"pikepdf's PDF/A validator needs pikepdf[pdfa]: {exc}")
    for data in (render_journal_pdf(make_journal()), render_ledger_pdf(make_ledger())):
        report = pdfa.validate_written(io.BytesIO(data), "3b")
        assert_pdfa_clean(report)


def test_signed_files_pass_the_pikepdf_pdfa_validator(signed_journal: bytes):
    try:
        from pikepdf import pdfa
    except ImportError as exc:
        missing(f"pikepdf's PDF/A validator needs pikepdf[pdfa]: {exc}")
    report = pdfa.validate_written(io.BytesIO(signed_journal), "3b")
    assert_pdfa_clean(report)


def assert_pdfa_clean(report) -> None:  # type: ignore[no-untyped-def]
    """No errors. pikepdf's validator does not cover PDF/A-3 embedded files or the signature's
    form field: it reports them as "unsupported" rather than checking them (our own checks above
    cover the file specs; pdfsig covers the signature)."""
    not_covered = ("embedded files", "interactive forms")
    errors = [
        f
        for f in report.findings
        if not (f.kind == "unsupported" and any(part in f.message for part in not_covered))
    ]
    assert not errors, report


def _xmp_value(xmp: str, name: str) -> str:
    match = re.search(rf'{name}="([^"]*)"', xmp) or re.search(rf"<{name}>(.*?)</{name}>", xmp, re.S)
    assert match, name
    return match.group(1)


def _pdf_date(text: str) -> dt.datetime:
    m = re.fullmatch(r"D:(\d{14})(Z|[+-]\d\d'\d\d'?)?", text)
    assert m, text
    moment = dt.datetime.strptime(m.group(1), "%Y%m%d%H%M%S")
    zone = m.group(2) or "Z"
    if zone == "Z":
        return moment.replace(tzinfo=dt.UTC)
    hours, minutes = int(zone[1:3]), int(zone[4:6])
    offset = dt.timedelta(hours=hours, minutes=minutes) * (1 if zone[0] == "+" else -1)
    return moment.replace(tzinfo=dt.timezone(offset))


def assert_pdfa3b(data: bytes) -> None:
    """The PDF/A-3b rules this pipeline is responsible for (the stand-in for veraPDF)."""
    assert data.startswith(b"%PDF-1.7\n%")
    assert b"/Encrypt" not in data
    with pikepdf.open(io.BytesIO(data)) as pdf:
        assert pdf.pdf_version == "1.7"
        assert str(pdf.Root.get("/Version", "/1.7")) == "/1.7"
        assert pdf.open_metadata().pdfa_status == "3B"
        assert "/ID" in pdf.trailer
        # XMP and the information dictionary say the same thing
        xmp_stream = pdf.Root.Metadata
        assert "/Filter" not in xmp_stream.stream_dict
        xmp = xmp_stream.read_bytes().decode("utf-8")
        info = pdf.trailer.Info
        assert str(info.Title) in xmp and str(info.Author) in xmp
        assert _xmp_value(xmp, "xmp:CreatorTool") == str(info.Creator)
        assert _xmp_value(xmp, "pdf:Producer") == str(info.Producer)
        for xmp_name, info_name in (
            ("xmp:CreateDate", "/CreationDate"),
            ("xmp:ModifyDate", "/ModDate"),
        ):
            assert dt.datetime.fromisoformat(_xmp_value(xmp, xmp_name)) == _pdf_date(
                str(info[info_name])
            ), xmp_name
        # sRGB output intent
        (intent,) = pdf.Root.OutputIntents
        assert intent.S == "/GTS_PDFA1"
        profile = intent.DestOutputProfile
        assert int(profile.N) == 3 and profile.read_bytes() == srgb_icc_profile()
        # every font embedded, no standard-14 fallback
        for page in pdf.pages:
            for font in page.Resources.get("/Font", {}).values():
                descriptor = font.FontDescriptor
                assert "/FontFile2" in descriptor, font.BaseFont
                assert "Helvetica" not in str(font.BaseFont)
                assert "DejaVuSans" in str(font.BaseFont)
            for annot in page.get("/Annots", []):
                flags = int(annot.get("/F", 0))
                assert flags & 4 and not flags & (1 | 2 | 32)  # printable, not hidden
            for _operands, operator in pikepdf.parse_content_stream(page):
                assert str(operator) not in ("k", "K"), "DeviceCMYK without a CMYK intent"
        assert b"Helvetica" not in data
        # associated files
        for spec in pdf.Root.get("/AF", []):
            assert spec.AFRelationship in ("/Source", "/Data")
            assert "/UF" in spec and "/F" in spec and "/Desc" in spec
            stream = spec.EF.F
            assert "/Subtype" in stream and "/ModDate" in stream.Params
        assert len(pdf.Root.get("/AF", [])) == len(pdf.attachments)
        assert "/NeedAppearances" not in pdf.Root.get("/AcroForm", {})


def test_embedded_files_round_trip(signed_journal: bytes, signed_ledger: bytes):
    proof = make_proof()
    expected = {
        "entries.jsonl": proof.entries_jsonl,
        "checkpoint": proof.checkpoint_note.encode(),
        "log.vkey": proof.vkey.encode(),
        "student-0042.tlog-proof": proof.tlog_proofs[0][1].encode(),
        "device-keys.json": proof.extra_files[0][1],
    }
    assert extract_embedded_files(signed_journal) == expected
    assert extract_embedded_files(signed_ledger) == expected
    with pikepdf.open(io.BytesIO(signed_journal)) as pdf:
        relationships = {str(spec.UF): str(spec.AFRelationship) for spec in pdf.Root.AF}
    assert relationships["entries.jsonl"] == "/Source"
    assert relationships["checkpoint"] == "/Data"


def test_no_proof_means_no_embedded_files_and_no_qr():
    data = render_journal_pdf(make_journal(proof=None))
    assert extract_embedded_files(data) == {}
    with pikepdf.open(io.BytesIO(data)) as pdf:
        assert "/AF" not in pdf.Root
        assert all("/XObject" not in page.Resources for page in pdf.pages)
    assert_pdfa3b(data)


def test_duplicate_embedded_names_are_refused():
    proof = dataclasses.replace(make_proof(), tlog_proofs=(("checkpoint", "x"),))
    with pytest.raises(ValueError, match="unique"):
        render_journal_pdf(make_journal(proof=proof))


def test_srgb_profile_is_read_by_littlecms():
    try:
        from PIL import Image, ImageCms
    except ImportError:
        pytest.skip("Pillow with LittleCMS is not installed")
    profile = ImageCms.ImageCmsProfile(io.BytesIO(srgb_icc_profile()))
    assert ImageCms.getProfileDescription(profile).strip() == "sRGB IEC61966-2.1"
    transform = ImageCms.buildTransform(profile, ImageCms.createProfile("sRGB"), "RGB", "RGB")
    image = Image.new("RGB", (3, 1))
    colours = [(200, 100, 50), (10, 128, 250), (255, 255, 255)]
    for x, colour in enumerate(colours):
        image.putpixel((x, 0), colour)
    converted = ImageCms.applyTransform(image, transform)
    assert converted is not None
    for x, colour in enumerate(colours):
        assert all(abs(a - b) <= 1 for a, b in zip(converted.getpixel((x, 0)), colour, strict=True))


# --- ledger --------------------------------------------------------------------------------


def test_ledger_text_signature_and_charts(tmp_path: Path, signed_ledger: bytes):
    need_tool("pdfsig")
    path = write(tmp_path, signed_ledger)
    assert "Signature is Valid." in run("pdfsig", path)
    pages = pages_text(path)
    text = "\n".join(pages)
    for name in STUDENTS:
        assert name in text
    for subject in LEDGER_SUBJECTS:
        assert subject in text or subject.split()[0] in text
    assert "Сводная ведомость" in pages[0] and "Пропуски" in pages[0]
    # 12 subjects -> two table pages of six, then one page of twelve charts
    assert len(pages) == 3
    assert "Распределение оценок" in pages[-1]
    assert pages[-1].count("годовые") == len(LEDGER_SUBJECTS)
    first_row = next(line for line in pages[0].splitlines() if STUDENTS[0] in line)
    grades = make_ledger().rows[0].grades
    expected = [g for subject in LEDGER_SUBJECTS[:6] for g in grades[subject]] + ["10", "0"]
    assert first_row.split()[3:] == expected


def test_ledger_charts_count_the_latest_column(tmp_path: Path):
    rows = (
        LedgerRow("Әлібек Нұрлан", {"Алгебра": ("5", "4", "", "", "")}, 3, 1),
        LedgerRow("Қанат Өмірзақ", {"Алгебра": ("4", "4", "", "", "")}, 0, 0),
        LedgerRow("Ұлжан Үсенова", {"Алгебра": ("3", "5", "", "", "")}, 1, 1),
    )
    doc = LedgerDocument("Мектеп", "7Ә", "2025-2026", ("Алгебра",), rows, None, GENERATED)
    text = pdftotext(write(tmp_path, render_ledger_pdf(doc)))
    assert "Алгебра — 2 четв." in text
    assert "3 учеников" in text


# --- document helpers ---------------------------------------------------------------------


def test_cell_helpers():
    assert grade_mark("FO", {"score": 8}) == "8"
    assert grade_mark("SOR", {"points": 12, "max": 15}) == "СОР 12/15"
    assert grade_mark("SOCh", {"points": 18, "max": 20}) == "СОЧ 18/20"
    assert grade_mark("mark", {"mark": 4}) == "4"
    assert [attendance_mark(k) for k in ("absent", "sick", "late", "excused")] == [
        "н",
        "б",
        "оп",
        "уп",
    ]
    assert cell_text(("оп", "8")) == "оп 8"
    assert cell_text(()) == ""
    with pytest.raises(ValueError):
        grade_mark("bonus", {"score": 1})
    with pytest.raises(ValueError):
        attendance_mark("present")


def test_rows_must_have_one_cell_per_lesson():
    with pytest.raises(ValueError, match="cells"):
        SubjectSheet("Алгебра", "T", lessons(3), (StudentRow("Әлібек", ((), ())),))
    with pytest.raises(ValueError, match="quarter"):
        make_journal(quarter=5)


def test_ledger_prints_half_year_subjects_in_their_own_columns(tmp_path: Path):
    """Issue 14: a half-year subject has the columns I, II and the year; results that are not
    grades are printed in words (here in Kazakh)."""
    rows = (
        LedgerRow(
            "Әлібек Нұрлан",
            {
                "Алгебра": ("5", "4", "4", "5", "5"),
                "Көркем еңбек": ("4", "5", "5"),
                "Дене шынықтыру": ("exempt", "exempt", "", "", ""),
            },
            3,
            1,
        ),
    )
    doc = LedgerDocument(
        "Мектеп",
        "7Ә",
        "2026-2027",
        ("Алгебра", "Көркем еңбек", "Дене шынықтыру"),
        rows,
        None,
        generated_at=GENERATED,
        charts=False,
    )
    pages = pages_text(write(tmp_path, render_ledger_pdf(doc, language="kk")))
    header = next(line for line in pages[0].splitlines() if " II " in f" {line} ")
    assert header.split()[:13] == ["1", "2", "3", "4", "Ж", "I", "II", "Ж", "1", "2", "3", "4", "Ж"]
    row = next(line for line in pages[0].splitlines() if "Әлібек" in line)
    assert row.split()[3:11] == ["5", "4", "4", "5", "5", "4", "5", "5"]
    assert row.count("бос.") == 2  # exempt, in Kazakh
    assert "Жасалған уақыты: 2" in pages[0] and "(UTC+05:00)" in pages[0]


def test_cell_helpers_speak_the_printout_language():
    assert [attendance_mark(k, "kk") for k in ("absent", "sick", "late", "excused")] == [
        "Ж",
        "А",
        "К",
        "Д",
    ]
    assert grade_mark("SOR", {"points": 12, "max": 15}, "kk") == "БЖБ 12/15"
    assert grade_mark("SOCh", {"points": 18, "max": 20}, "kk") == "ТЖБ 18/20"
    with pytest.raises(ValueError):
        attendance_mark("absent", "en")


def test_the_last_page_says_how_to_verify_online_and_offline(tmp_path: Path):
    need_tool("pdftotext")
    url = "https://journal.example.kz/check"
    path = tmp_path / "kk.pdf"
    path.write_bytes(render_journal_pdf(make_journal(), language="kk", check_url=url))
    pages = subprocess.run(
        ["pdftotext", str(path), "-"], capture_output=True, text=True, check=True
    ).stdout.split("\f")
    pages = [p for p in pages if p.strip()]
    last = " ".join(pages[-1].split())
    assert url in last and "journal-verify pdf" in last and "тексеру" in last
    assert not any("journal-verify" in p for p in pages[:-1])
