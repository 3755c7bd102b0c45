"""discovery: search indexes, viewer stats, recommendations

Revision ID: 0008_discovery
Revises: 0007_subs
"""

import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

import livecast.store.base  # noqa: F401

revision = "0008_discovery"
down_revision = "0007_subs"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
