import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

import figures  # noqa: E402

# Hypothesis profiles for the fuzz tests (tests/test_fuzz_*.py):
#   ci    (default) a fixed, reproducible set: ~100 examples per fuzz test, no example database;
#   long  a longer random run: FASTRNN_FUZZ_PROFILE=long pytest tests/test_fuzz_parity.py
#         (or `pytest --hypothesis-profile=long ...`); failures print a minimal example.
try:
    from hypothesis import HealthCheck, settings
except ImportError:  # the fuzz tests skip themselves without hypothesis
    settings = None

if settings is not None:
    _common = dict(deadline=None, print_blob=True,
                   suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    settings.register_profile("ci", max_examples=100, database=None, derandomize=True, **_common)
    settings.register_profile(
        "long", max_examples=int(os.environ.get("FASTRNN_FUZZ_EXAMPLES", "5000")), **_common)
    settings.load_profile(os.environ.get("FASTRNN_FUZZ_PROFILE", "ci"))


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    line = figures.summary()
    if line:
        terminalreporter.write_sep("=", "fastrnn figures")
        terminalreporter.write_line(line)
    figures.dump()
