from messaging.constants import UPLOAD
from servicekit import run_service

from .app import create_app
from .settings import Settings

if __name__ == "__main__":
    run_service(UPLOAD, Settings, create_app, port=lambda s: s.upload_port)
