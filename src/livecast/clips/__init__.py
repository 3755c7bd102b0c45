"""Clips: short MP4s cut to the frame from a live stream's recent past or from a VOD."""
