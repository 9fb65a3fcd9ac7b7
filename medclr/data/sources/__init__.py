"""One adapter per dataset, each registered in :data:`medclr.data.prepare.SOURCES` on import."""

from medclr.data.sources import ptbxl

__all__ = ["ptbxl"]
