from servicekit import run_service

from .app import create_app
from .settings import Settings

if __name__ == "__main__":
    run_service("imageproc_runner", Settings, create_app, port=lambda s: s.runner_ops_port)
