"""Privacy by design: the IIN is checked, stored encrypted and found by a keyed hash; there is no
way to upload a photo."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest
import sqlalchemy as sa
from cryptography.exceptions import InvalidTag

from auth.iin import InvalidIIN, decrypt_iin, encrypt_iin, iin_lookup_hash, validate_iin
from journal.db import Base

KEY = base64.b64encode(b"k" * 32).decode()
OTHER_KEY = base64.b64encode(b"o" * 32).decode()
VALID = "130501500012"  # born 2013-05-01, boy born in the 2000s (5), serial 0001, check 2
ROOT = Path(__file__).resolve().parents[2]


def test_a_valid_iin_passes():
    assert validate_iin(f" {VALID} ") == VALID


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("13050150001", "12 digits"),
        ("1305015000190", "12 digits"),
        ("13050150001x", "12 digits"),
        ("１３０５０１５０００１２", "12 digits"),  # full-width digits
        ("131301500012", "birth date"),
        ("130532500012", "birth date"),
        ("130501500013", "check digit"),
    ],
)
def test_a_bad_iin_is_refused_with_its_reason(value, reason):
    with pytest.raises(InvalidIIN, match=reason):
        validate_iin(value)


def test_the_iin_is_stored_encrypted_and_found_by_a_keyed_hash():
    blob = encrypt_iin(VALID, KEY)
    assert VALID.encode() not in blob
    assert encrypt_iin(VALID, KEY) != blob  # a fresh nonce each time
    assert decrypt_iin(blob, KEY) == VALID
    with pytest.raises(InvalidTag):
        decrypt_iin(blob, OTHER_KEY)
    with pytest.raises(InvalidTag):
        decrypt_iin(blob[:-1] + bytes([blob[-1] ^ 1]), KEY)
    assert iin_lookup_hash(VALID, KEY) == iin_lookup_hash(VALID, KEY)
    assert iin_lookup_hash(VALID, KEY) != iin_lookup_hash(VALID, OTHER_KEY)


def test_no_column_holds_a_plain_iin_or_a_picture():
    columns = [
        (table.name, column.name)
        for table in Base.metadata.sorted_tables
        for column in table.columns
    ]
    assert ("students", "iin_encrypted") in columns
    for table, column in columns:
        assert not re.search(r"photo|avatar|picture|image", column), (table, column)
        assert column != "iin", table


def test_no_page_accepts_an_image_upload():
    """File inputs exist only for roster spreadsheets; none accepts images."""
    templates = [p for p in ROOT.glob("*/templates/**/*.html") if ".venv" not in p.parts]
    assert templates
    for template in templates:
        for tag in re.findall(r"<input[^>]*type=[\"']?file[^>]*>", template.read_text()):
            accept = re.search(r"accept=[\"']([^\"']*)", tag)
            assert accept, f"{template}: a file input without an accept list: {tag}"
            assert "image" not in accept.group(1) and "jp" not in accept.group(1), template


def test_demo_students_have_no_plain_iin(app, session):
    result = app.test_cli_runner().invoke(
        args=["demo", "seed", "--students", "2", "--classes", "1"], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    rows = session.execute(sa.text("SELECT iin_encrypted, iin_hmac FROM students")).all()
    assert rows and all(len(blob) > 12 and len(digest) == 32 for blob, digest in rows)
