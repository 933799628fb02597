"""rootstrap: bootstrap Debian and Ubuntu root filesystems, keep them, run and boot them."""

__version__ = "0.1.0"
