"""Analysis commands that read run folders: plots, the results report, paired comparisons, seed summaries."""
