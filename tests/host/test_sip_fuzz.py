"""A short run of the SIP mutation fuzzer inside `make test` (the long one is `make fuzz`)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import fuzz_sip  # noqa: E402


def test_fuzz_short_run_only_sip_error():
    counts, ok = fuzz_sip.run(3000, seed=20261123, report=False)
    assert ok, "a foreign exception escaped the SIP core (see the saved input)"
    # the mutations reach every outcome, so the run exercises more than the error path
    assert counts["accepted"] > 100 and counts["dropped"] > 100
    assert counts["refused 400"] > 100 and counts["framing errors"] > 10


def test_fuzz_seeds_all_parse_or_refuse_cleanly():
    for data in fuzz_sip.seeds():
        fuzz_sip.exercise(data, fuzz_sip.random.Random(1), fuzz_sip.Counter())
