"""The web app: pages for viewers, streamers and moderators, served by Livecast itself."""
