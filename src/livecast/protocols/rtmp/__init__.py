"""RTMP publishing, server side, sans-IO: handshake, chunk stream, AMF0 and the connection."""
