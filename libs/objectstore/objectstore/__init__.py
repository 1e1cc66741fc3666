"""S3 access for imagemesh: settings, one client per process, small typed operations."""

from ._store import (
    Download,
    ObjectNotFound,
    ObjectStore,
    S3Settings,
    StoredObject,
    open_store,
)

__all__ = ["Download", "ObjectNotFound", "ObjectStore", "S3Settings", "StoredObject", "open_store"]
