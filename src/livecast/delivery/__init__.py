"""Delivery: the HLS origin that CDN edges and players fetch from."""
