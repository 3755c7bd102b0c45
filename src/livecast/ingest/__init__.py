"""RTMP ingest: publishers connect, authenticate with a stream key, and feed the media pipeline."""
