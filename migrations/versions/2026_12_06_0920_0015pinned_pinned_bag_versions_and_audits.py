"""pinned bag versions and archive audits

Revision ID: 0015pinned
Revises: 0014half_bags
Create Date: 2026-12-06 04:00:00

archived_bags.version_id: the S3 version written at upload (reads, audits and deletes name it);
archived_bags.destroy_started_at: the expiry's intent, committed before it deletes;
archive_audits: one row per `archive audit` of a school, append-only like bag_destructions.
"""

import sqlalchemy as sa
from alembic import op

import journal.db  # noqa: F401  (custom column types)

revision = "0015pinned"
down_revision = "0014half_bags"
branch_labels = None
depends_on = None

BIG = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

# The same guard as migrations 0002history_guard and 0007archive.
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
    with op.batch_alter_table("archived_bags", schema=None) as batch_op:
        batch_op.add_column(sa.Column("version_id", sa.String(length=1024), nullable=True))
        batch_op.add_column(
            sa.Column(
                "destroy_started_at", journal.db.UTCDateTime(timezone=True), nullable=True
            )
        )
    op.create_table(
        "archive_audits",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("school_id", sa.Integer(), nullable=False),
        sa.Column("storage", sa.String(length=300), nullable=False),
        sa.Column("started_at", journal.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("finished_at", journal.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("bags_checked", sa.Integer(), nullable=False),
        sa.Column("finding_count", sa.Integer(), nullable=False),
        sa.Column("findings", sa.Text(), nullable=False),
        sa.Column("ledger_seq", BIG, nullable=False),
        sa.ForeignKeyConstraint(
            ["school_id"], ["schools.id"], name=op.f("fk_archive_audits_school_id_schools")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_archive_audits")),
    )
    with op.batch_alter_table("archive_audits", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_archive_audits_school_id"), ["school_id"], unique=False
        )
    guard("archive_audits")


def downgrade():
    unguard("archive_audits")
    with op.batch_alter_table("archive_audits", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_archive_audits_school_id"))
    op.drop_table("archive_audits")
    with op.batch_alter_table("archived_bags", schema=None) as batch_op:
        batch_op.drop_column("destroy_started_at")
        batch_op.drop_column("version_id")
