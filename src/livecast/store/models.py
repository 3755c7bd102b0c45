"""Every domain's models, imported so that ``Base.metadata`` is complete for Alembic."""

from livecast.api.eventsub import models as _eventsub  # noqa: F401
from livecast.chat import models as _chat  # noqa: F401
from livecast.community import models as _community  # noqa: F401
from livecast.discovery import models as _discovery  # noqa: F401
from livecast.identity import models as _identity  # noqa: F401
from livecast.ingest import models as _ingest  # noqa: F401
from livecast.store.base import Base
from livecast.subscriptions import models as _subscriptions  # noqa: F401
from livecast.vod import models as _vod  # noqa: F401

metadata = Base.metadata
