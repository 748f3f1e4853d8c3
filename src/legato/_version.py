"""The version of this Legato (read by the package, the service and the traces)."""

__version__ = "0.1.0"
