"""sync: quarantined submissions (entries signed by unknown or revoked device keys)

Revision ID: 0005sync
Revises: 0003user_prefs
Create Date: 2026-11-21 22:30:00
"""

import sqlalchemy as sa
from alembic import op

import journal.db  # noqa: F401  (custom column types)

revision = "0005sync"
down_revision = "0003user_prefs"
branch_labels = None
depends_on = None

PG_FUNCTION = """
CREATE OR REPLACE FUNCTION refuse_history_rewrite() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'restrict_violation';
END
$$
"""


def guard(table):
    if op.get_bind().dialect.name == "postgresql":
        op.execute(PG_FUNCTION)
        op.execute(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION refuse_history_rewrite()"
        )
        op.execute(
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION refuse_history_rewrite()"
        )
    else:
        for action in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {table}_no_{action.lower()} BEFORE {action} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, '{table} is append-only: {action} refused'); END"
            )


def unguard(table):
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
        op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
    else:
        for action in ("update", "delete"):
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_{action}")


def upgrade():
    op.create_table(
        "quarantined_submissions",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("received_at", journal.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("uploaded_by", sa.Integer(), nullable=False),
        sa.Column("kid", sa.String(length=64), nullable=False),
        sa.Column("entry_id", sa.String(length=36), nullable=True),
        sa.Column("reason", sa.String(length=20), nullable=False),
        sa.Column("digest", sa.LargeBinary(length=32), nullable=False),
        sa.Column("submission", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["uploaded_by"],
            ["users.id"],
            name=op.f("fk_quarantined_submissions_uploaded_by_users"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_quarantined_submissions")),
        sa.UniqueConstraint("digest", name=op.f("uq_quarantined_submissions_digest")),
    )
    op.create_index(
        "ix_quarantined_submissions_kid", "quarantined_submissions", ["kid"], unique=False
    )
    guard("quarantined_submissions")


def downgrade():
    unguard("quarantined_submissions")
    op.drop_index("ix_quarantined_submissions_kid", table_name="quarantined_submissions")
    op.drop_table("quarantined_submissions")
