"""transfer codes between schools, and the index the quarantine's daily quota counts with

Revision ID: 0012transfers
Revises: 0011sessions
Create Date: 2026-12-06 03:46:14
"""

import sqlalchemy as sa
from alembic import op

import journal.db  # noqa: F401  (custom column types)

revision = "0012transfers"
down_revision = "0011sessions"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "transfer_codes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("school_id", sa.Integer(), nullable=False),
        sa.Column("student_id", sa.Integer(), nullable=False),
        sa.Column("code_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("created_by_id", sa.Integer(), nullable=True),
        sa.Column("created_at", journal.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", journal.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("used_at", journal.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("used_by_id", sa.Integer(), nullable=True),
        sa.Column("admitted_student_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["admitted_student_id"],
            ["students.id"],
            name=op.f("fk_transfer_codes_admitted_student_id_students"),
        ),
        sa.ForeignKeyConstraint(
            ["created_by_id"], ["users.id"], name=op.f("fk_transfer_codes_created_by_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["school_id"], ["schools.id"], name=op.f("fk_transfer_codes_school_id_schools")
        ),
        sa.ForeignKeyConstraint(
            ["student_id"], ["students.id"], name=op.f("fk_transfer_codes_student_id_students")
        ),
        sa.ForeignKeyConstraint(
            ["used_by_id"], ["users.id"], name=op.f("fk_transfer_codes_used_by_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_transfer_codes")),
        sa.UniqueConstraint("code_hash", name=op.f("uq_transfer_codes_code_hash")),
    )
    op.create_index(
        op.f("ix_transfer_codes_school_id"), "transfer_codes", ["school_id"], unique=False
    )
    op.create_index(
        op.f("ix_transfer_codes_student_id"), "transfer_codes", ["student_id"], unique=False
    )
    op.create_index(
        "ix_quarantined_submissions_uploader_at",
        "quarantined_submissions",
        ["uploaded_by", "received_at"],
        unique=False,
    )


def downgrade():
    op.drop_index("ix_quarantined_submissions_uploader_at", table_name="quarantined_submissions")
    op.drop_index(op.f("ix_transfer_codes_student_id"), table_name="transfer_codes")
    op.drop_index(op.f("ix_transfer_codes_school_id"), table_name="transfer_codes")
    op.drop_table("transfer_codes")
