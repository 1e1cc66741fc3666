from servicekit import run_service

from .app import create_app
from .settings import Settings

if __name__ == "__main__":
    run_service("provenancedb", Settings, create_app, port=lambda s: s.provenancedb_ops_port)
