"""Pure readers of the formats rootstrap meets: deb822, Debian versions, .deb (ar), tar.

No I/O beyond the stream they are given, nothing of rootstrap's but rootstrap.errors.
"""
