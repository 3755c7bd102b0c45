"""Packaging: CMAF fragments into LL-HLS segments, parts and playlists."""
