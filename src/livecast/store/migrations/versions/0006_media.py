"""media: archive, vods, clips

Revision ID: 0006_media
Revises: 0005_web
"""

import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

import livecast.store.base  # noqa: F401

revision = "0006_media"
down_revision = "0005_web"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
