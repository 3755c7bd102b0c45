"""web and oauth extras

Revision ID: 0005_web
Revises: 0004_api
"""

import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

import livecast.store.base  # noqa: F401

revision = "0005_web"
down_revision = "0004_api"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
