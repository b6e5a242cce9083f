"""Data loaders: bundled real data sets (files/), CSV/Parquet, windowing, text vocabularies."""
