from aiohttp import web

from messaging import Broker
from objectstore import ObjectStore

from .guard import Guard
from .inflight import UploadSlots
from .jobs import Jobs
from .live import LiveJobs
from .progress import StreamSlots
from .settings import Settings

SETTINGS = web.AppKey("settings", Settings)
BROKER = web.AppKey("broker", Broker)
STORE = web.AppKey("store", ObjectStore)
JOBS = web.AppKey("jobs", Jobs)
LIVE = web.AppKey("live", LiveJobs)
GUARD = web.AppKey("guard", Guard)
STREAMS = web.AppKey("streams", StreamSlots)
UPLOADS = web.AppKey("uploads", UploadSlots)
