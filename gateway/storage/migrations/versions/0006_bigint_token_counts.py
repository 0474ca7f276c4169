"""Token counts become 64-bit: request_logs usage and the quotas' token limits.

PostgreSQL's INTEGER holds 2**31 - 1; one upstream usage of 3,000,000,000 tokens made a whole
batch of records fail. (SQLite integers are 64-bit already; the batch rebuild keeps it in step.)

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_COLUMNS = {
    "request_logs": ("prompt_tokens", "completion_tokens"),
    "quotas": ("tpm", "tokens_per_day"),
}


def _retype(to: type[sa.types.TypeEngine[int]], was: type[sa.types.TypeEngine[int]]) -> None:
    for table, columns in _COLUMNS.items():
        with op.batch_alter_table(table) as batch:
            for column in columns:
                batch.alter_column(column, type_=to(), existing_type=was())


def upgrade() -> None:
    _retype(sa.BigInteger, sa.Integer)


def downgrade() -> None:
    _retype(sa.Integer, sa.BigInteger)
