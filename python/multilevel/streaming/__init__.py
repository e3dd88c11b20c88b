"""Data larger than memory and data on a Dask cluster: chunked sources and the passes over them."""

from multilevel.streaming.sources import ChunkSource, chunks

__all__ = ["ChunkSource", "chunks"]
