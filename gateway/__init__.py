"""upload-gateway: PyPI-grade upload security in front of any Python package index."""

__version__ = "0.1.0"
