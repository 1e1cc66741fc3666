from messaging.constants import PROVENANCEDB
from servicekit import run_service

from .app import create_app
from .settings import Settings

if __name__ == "__main__":
    run_service(PROVENANCEDB, Settings, create_app, port=lambda s: s.provenancedb_ops_port)
