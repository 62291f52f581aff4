"""The Prefect-heavy benchmarks in their quick mode (see tests/test_bench.py): a file of their
own, so `--dist loadfile` runs them beside the other benchmarks, not after them."""

from __future__ import annotations

import pytest

from tests.test_bench import PREFECT_HEAVY, runs_quick_and_prints_its_table


@pytest.mark.parametrize("script", PREFECT_HEAVY)
def test_prefect_benchmark_runs_in_its_quick_mode_and_prints_its_table(script, tmp_path):
    runs_quick_and_prints_its_table(script, tmp_path)
