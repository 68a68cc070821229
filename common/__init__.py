"""Pieces shared by the experiment scripts: IMDB data, metrics, run tracking, config parsing."""
