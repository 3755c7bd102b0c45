"""helix and eventsub: categories, eventsub subscriptions and deliveries

Revision ID: 0004_api
Revises: 0003_chat
"""

import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

import livecast.store.base  # noqa: F401

revision = "0004_api"
down_revision = "0003_chat"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
