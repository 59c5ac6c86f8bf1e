"""ClickHouse: the sink that loads events, and the analyst's toolkit (named queries, search, retention)."""
