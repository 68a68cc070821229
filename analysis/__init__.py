"""Analysis commands that read run folders: plots, the results report, paired comparisons, seed summaries."""
import common  # noqa: F401 - first: its log filter must be in place before bitsandbytes is imported
