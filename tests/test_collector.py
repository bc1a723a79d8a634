"""The server process's collector settings (run in a child interpreter: they are process-wide)."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def test_settle_freezes_survivors_and_raises_the_young_threshold() -> None:
    code = textwrap.dedent("""
        import gc
        from fhir_hub import collector
        kept = [[i] for i in range(1000)]
        before = gc.get_threshold()
        collector.settle()
        after = gc.get_threshold()
        print(gc.get_freeze_count() >= 1000, after == (collector.YOUNG_THRESHOLD, *before[1:]), before[0] != after[0])
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["True", "True", "True"]
