"""S3 access for imagemesh: settings, one client per process, small typed operations."""

from ._store import ObjectNotFound, ObjectStore, S3Settings, StoredObject, open_store

__all__ = ["ObjectNotFound", "ObjectStore", "S3Settings", "StoredObject", "open_store"]
