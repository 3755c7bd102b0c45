"""Discovery: categories, follows, viewer counts, browse, search and recommendations."""
