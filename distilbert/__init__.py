import common  # noqa: F401 - first: its log filter must be in place before bitsandbytes is imported
