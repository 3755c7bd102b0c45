"""Media: the transcoding ladder, the ffmpeg process per stream, and the live stream registry."""
