"""Fuzz targets for what the mesh takes from outside: upload forms and AMQP messages.

Each target (see `targets.TARGETS`) drives real product code in process, with no server
but an in-process aiohttp one, and checks one property: whatever arrives, the outcome is
one of the documented ones (an accepted upload or an `ApiError` with a documented 4xx
code; an envelope and event, or EnvelopeError / ValidationError / RpcError), never another
exception, never a hang, and memory bounded by the upload limit.

Two modes, the same targets:

- in the test suite: `tests/fuzz/test_fuzz.py` runs each target for a few hundred examples;
- on demand, for as long as you like: `python -m tests.fuzz --minutes 10 [--target NAME]`
  prints executions per target and every failure (with the seed to replay it).

Crashes found and not fixed yet are listed in `known.KNOWN`, each with a regression test
in `test_regressions.py` (xfail, strict): the targets count them as known rather than fail,
so the suite stays green until the fix lands and the regression test starts passing.
"""
