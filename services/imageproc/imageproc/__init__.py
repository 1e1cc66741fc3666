"""imageproc: pure image processing with pyvips/libvips. No S3, no database, no credentials
beyond its broker login.

Serves RPC: `imageproc.run` — request payload = the input image's bytes, meta =
`{"pipeline": [...]}`; reply payload = the output image's bytes, meta = its format,
dimensions and per-operation timings. Errors come back as RPC error codes
(`invalid_pipeline`, `unsupported_type`, `undecodable`, `too_many_pixels`, ...). Every
reply names the engine that computed it (`RunReply.engine`, `engine.py`), and
`imageproc.engine` answers it without any work (the runner's reuse key).
Publishes no events: each reply lists the operations applied (`steps`), which the runner
records in `image.processed`. Pipelines run in worker processes that
are killed and replaced at the deadline or over their memory share (`workers.py`);
`operations.py` holds the pure synchronous pyvips code they run.
"""
