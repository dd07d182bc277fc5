"""Foundation: a tiny alltoall over 2 real processes gives the known result on both ranks."""

import pytest
from hvdrun import horovodrun

pytestmark = pytest.mark.horovod  # deselect with -m 'not horovod' (tests/conftest.py)


def test_alltoall_two_processes(tmp_path):
    job = horovodrun("_worker_alltoall.py", 2, tmp_path, timeout=60)
    # rank 0 keeps its first element and gets rank 1's first; rank 1 gets the other two each.
    expected = {0: [0, 10], 1: [1, 2, 11, 12]}
    expected_splits = {0: [1, 1], 1: [2, 2]}
    for rank, result in enumerate(job.results):
        assert result["size"] == 2 and result["rank"] == rank
        assert result["eager"] == expected[rank]
        assert result["graph"] == expected[rank]
        assert result["splits"] == expected_splits[rank]
