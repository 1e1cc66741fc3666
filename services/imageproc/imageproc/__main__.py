from messaging.constants import IMAGEPROC
from servicekit import run_service

from .app import create_app
from .settings import Settings

# The memory ceiling and libvips' thread count are applied in each worker process
# (workers.py): the parent only speaks RPC.
if __name__ == "__main__":
    run_service(IMAGEPROC, Settings, create_app, port=lambda s: s.imageproc_ops_port)
