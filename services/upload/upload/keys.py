from aiohttp import web

from messaging import Broker
from objectstore import ObjectStore

from .guard import Guard
from .jobs import Jobs
from .live import LiveJobs
from .settings import Settings
from .slots import Slots
from .webhook_http import Sender

SETTINGS = web.AppKey("settings", Settings)
BROKER = web.AppKey("broker", Broker)
STORE = web.AppKey("store", ObjectStore)
JOBS = web.AppKey("jobs", Jobs)
LIVE = web.AppKey("live", LiveJobs)
GUARD = web.AppKey("guard", Guard)
STREAMS = web.AppKey("streams", Slots)
UPLOADS = web.AppKey("uploads", Slots)
DOWNLOADS = web.AppKey("downloads", Slots)
WEBHOOK_SENDER = web.AppKey("webhook_sender", Sender)
