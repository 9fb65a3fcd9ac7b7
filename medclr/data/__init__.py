"""Datasets as manifests: ``prepare`` (adapters per dataset), the manifest schema, record validation."""

from medclr.data.manifest import Manifest, ManifestInfo, read_manifest, write_manifest
from medclr.data.prepare import SOURCES, PrepareOptions, PrepareReport, prepare

__all__ = [
    "SOURCES",
    "Manifest",
    "ManifestInfo",
    "PrepareOptions",
    "PrepareReport",
    "prepare",
    "read_manifest",
    "write_manifest",
]
