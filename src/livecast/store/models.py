"""Every domain's models, imported so that ``Base.metadata`` is complete for Alembic."""

from livecast.discovery import models as _discovery  # noqa: F401
from livecast.identity import models as _identity  # noqa: F401
from livecast.ingest import models as _ingest  # noqa: F401
from livecast.store.base import Base

metadata = Base.metadata
