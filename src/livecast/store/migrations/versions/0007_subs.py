"""subscriptions, payments and ledger

Revision ID: 0007_subs
Revises: 0006_media
"""

import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

import livecast.store.base  # noqa: F401

revision = "0007_subs"
down_revision = "0006_media"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
