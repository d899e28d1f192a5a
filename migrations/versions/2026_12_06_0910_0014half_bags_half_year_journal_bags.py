"""archive bags of half-year journals (subjects graded by half-years)

Revision ID: 0014half_bags
Revises: 0013year
Create Date: 2026-12-06 09:10:00
"""

from alembic import op

revision = "0014half_bags"
down_revision = "0013year"
branch_labels = None
depends_on = None

OLD = "kind IN ('journal_quarter', 'journal_year', 'ledger_year')"
NEW = "kind IN ('journal_quarter', 'journal_half', 'journal_year', 'ledger_year')"


def _replace(condition):
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        # Rebuilding archived_bags would drop the rows bag_destructions points at: the CHECK
        # is changed in the schema text instead, as SQLite's ALTER TABLE page describes.
        version = bind.exec_driver_sql("PRAGMA schema_version").scalar()
        bind.exec_driver_sql("PRAGMA writable_schema = ON")
        bind.exec_driver_sql(
            "UPDATE sqlite_master SET sql = replace(sql, ?, ?) "
            "WHERE type = 'table' AND name = 'archived_bags'",
            (OLD if condition == NEW else NEW, condition),
        )
        bind.exec_driver_sql(f"PRAGMA schema_version = {int(version) + 1}")
        bind.exec_driver_sql("PRAGMA writable_schema = OFF")
        return
    op.drop_constraint(op.f("ck_archived_bags_kind"), "archived_bags", type_="check")
    op.create_check_constraint(op.f("ck_archived_bags_kind"), "archived_bags", condition)


def upgrade():
    _replace(NEW)


def downgrade():
    _replace(OLD)
