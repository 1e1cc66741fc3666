from messaging.constants import IMAGEPROC_RUNNER
from servicekit import run_service

from .app import create_app
from .settings import Settings

if __name__ == "__main__":
    run_service(IMAGEPROC_RUNNER, Settings, create_app, port=lambda s: s.runner_ops_port)
