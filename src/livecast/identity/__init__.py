"""Users, channels, passwords, stream keys, OAuth2 applications and tokens."""
