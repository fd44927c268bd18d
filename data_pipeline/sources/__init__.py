"""Input readers: each turns one input format into the canonical `SourceData`."""

from data_pipeline.sources.base import Row, SourceData
from data_pipeline.sources.detect import FORMATS, read_source

__all__ = ["FORMATS", "Row", "SourceData", "read_source"]
