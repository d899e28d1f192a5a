"""term closures and late-correction approvals

Revision ID: 0008terms
Revises: 0003user_prefs
Create Date: 2026-11-21 22:40:00
"""

import sqlalchemy as sa
from alembic import op

import journal.db  # noqa: F401  (custom column types)

revision = "0008terms"
down_revision = "0003user_prefs"
branch_labels = None
depends_on = None

HISTORY_TABLES = ("term_closures", "late_correction_approvals")
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
    else:
        for action in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {table}_no_{action.lower()} BEFORE {action} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, '{table} is append-only: {action} refused'); END"
            )


def upgrade():
    op.create_table(
        "term_closures",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("term_id", sa.Integer(), nullable=False),
        sa.Column("log_id", sa.Integer(), nullable=False),
        sa.Column(
            "checkpoint_size", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("closed_by_id", sa.Integer(), nullable=True),
        sa.Column("closed_at", journal.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["closed_by_id"], ["users.id"], name=op.f("fk_term_closures_closed_by_id_users")
        ),
        sa.ForeignKeyConstraint(["log_id"], ["logs.id"], name=op.f("fk_term_closures_log_id_logs")),
        sa.ForeignKeyConstraint(
            ["term_id"], ["terms.id"], name=op.f("fk_term_closures_term_id_terms")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_term_closures")),
        sa.UniqueConstraint("term_id", "log_id", name=op.f("uq_term_closures_term_id_log_id")),
    )
    op.create_index(op.f("ix_term_closures_log_id"), "term_closures", ["log_id"], unique=False)
    op.create_table(
        "late_correction_approvals",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("log_id", sa.Integer(), nullable=False),
        sa.Column("cell", sa.String(length=80), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("approved_by_id", sa.Integer(), nullable=False),
        sa.Column("approved_at", journal.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", journal.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["approved_by_id"],
            ["users.id"],
            name=op.f("fk_late_correction_approvals_approved_by_id_users"),
        ),
        sa.ForeignKeyConstraint(
            ["log_id"], ["logs.id"], name=op.f("fk_late_correction_approvals_log_id_logs")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_late_correction_approvals")),
    )
    op.create_index(
        "ix_late_correction_approvals_cell",
        "late_correction_approvals",
        ["log_id", "cell"],
        unique=False,
    )
    for table in HISTORY_TABLES:
        guard(table)


def downgrade():
    op.drop_index("ix_late_correction_approvals_cell", table_name="late_correction_approvals")
    op.drop_table("late_correction_approvals")
    op.drop_index(op.f("ix_term_closures_log_id"), table_name="term_closures")
    op.drop_table("term_closures")
