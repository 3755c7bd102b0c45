"""chat: rooms, bans, roles, blocked terms, follows

Revision ID: 0003_chat
Revises: 0002_video
"""

import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

import livecast.store.base  # noqa: F401

revision = "0003_chat"
down_revision = "0002_video"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
