"""pytest plugin for benchmarks/gpu_check.sh (``-p gpu_check_plugin``, benchmarks/ on the path).

Made for a GPU lease that may end at any moment and a CUDA context that one illegal
memory access poisons for every later test:

- GPU_CHECK_JSONL=path: one JSON line per test as it starts and as it ends (outcome,
  seconds, first lines of the failure), flushed at once: kept even if pytest is killed.
- GPU_CHECK_TEST_TIMEOUT=seconds (default 60): a test running longer dumps every
  thread's traceback (to GPU_CHECK_TRACEBACKS=path, else the terminal's stderr) and ends
  the process (faulthandler, which works even while a CUDA call blocks in C); the JSON
  lines then show which test started and never ended.
- The first failure is printed in a banner; a failure that is a CUDA error (illegal
  memory access, launch failure, device-side assert) stops the session, since every
  later test would fail on the lost context, and says so.
- GPU_CHECK_SKIP=path: deselects the tests that already have an outcome in that JSON
  lines file, to resume a run in a fresh process after a crash.
"""
import faulthandler
import json
import os
import time

import pytest

CUDA_ERRORS = ("illegal memory access", "CUDA error", "unspecified launch failure",
               "device-side assert", "misaligned address", "CUBLAS_STATUS")
_state = {"first_failure": None, "start": {}, "dump_to": None}


def pytest_configure(config):
    # Where a timed-out test's tracebacks go: not sys.stderr, which pytest's capture
    # swaps for a temporary file that dies with the process.
    path = os.environ.get("GPU_CHECK_TRACEBACKS")
    _state["dump_to"] = open(path, "a") if path else os.fdopen(os.dup(2), "w")


def _write(record):
    path = os.environ.get("GPU_CHECK_JSONL")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())


def pytest_collection_modifyitems(config, items):
    path = os.environ.get("GPU_CHECK_SKIP")
    if not path or not os.path.exists(path):
        return
    done = set()
    with open(path) as f:
        for line in f:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if "outcome" in record:
                done.add(record["nodeid"])
    keep = [item for item in items if item.nodeid not in done]
    dropped = [item for item in items if item.nodeid in done]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep
        print(f"gpu_check_plugin: resuming, {len(dropped)} tests already have a result",
              flush=True)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    timeout = float(os.environ.get("GPU_CHECK_TEST_TIMEOUT", "60"))
    _write({"event": "start", "nodeid": item.nodeid, "time": time.time()})
    _state["start"][item.nodeid] = time.time()
    if timeout > 0:
        faulthandler.dump_traceback_later(timeout, exit=True, file=_state["dump_to"])
    try:
        yield
    finally:
        if timeout > 0:
            faulthandler.cancel_dump_traceback_later()


def pytest_runtest_logreport(report):
    failed = report.failed
    if report.when != "call" and not failed and not (report.when == "setup" and report.skipped):
        return
    message = ""
    if failed:
        message = str(report.longrepr)[-3000:]
    _write({"nodeid": report.nodeid, "outcome": report.outcome, "when": report.when,
            "seconds": round(time.time() - _state["start"].get(report.nodeid, time.time()), 3),
            "message": message[-1200:]})
    if failed and _state["first_failure"] is None:
        _state["first_failure"] = report.nodeid
        cuda = any(e in message for e in CUDA_ERRORS)
        bar = "!" * 100
        print(f"\n{bar}\nFIRST FAILURE: {report.nodeid} ({report.when})"
              f"{' -- a CUDA error: later CUDA tests cannot be trusted' if cuda else ''}\n"
              f"{message[-2500:]}\n{bar}", flush=True)
        path = os.environ.get("GPU_CHECK_FIRST_FAILURE")
        if path:
            with open(path, "w") as f:
                f.write(report.nodeid + "\n")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_makereport(item, call):
    if call.excinfo is not None and any(e in str(call.excinfo.value) for e in CUDA_ERRORS):
        item.session.shouldstop = (f"CUDA error in {item.nodeid}: the context is lost, "
                                   "every later CUDA call would fail")
        _write({"event": "stopped", "nodeid": item.nodeid})
