"""Bad MovieLens files give an error naming the file and the line, and the data cache never
holds a half-written file: not after an exception, not after kill -9 mid-write. (Field
counts, non-numeric ratings, unknown ids, missing columns and files, and an exception
mid-write are covered in tests/data/test_movielens_data.py.)"""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from lmn_tf.data import cache, movielens

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def small(ml100k_copy):
    """A 1,000-rating copy of ML-100K in tmp_path, with its own cache directory."""
    return ml100k_copy(1000)


def load(data_dir):
    return movielens.load("ml-100k", data_dir=data_dir, progress=False)


def edit(path: Path, lineno: int, new: bytes) -> None:
    lines = path.read_bytes().split(b"\n")
    lines[lineno - 1] = new
    path.write_bytes(b"\n".join(lines))


def test_a_file_cut_mid_line_names_the_last_line(small):
    inter = small / "ml-100k.inter"
    blob = inter.read_bytes()
    inter.write_bytes(blob[: blob.rindex(b"\t")])  # the last line loses its timestamp
    with pytest.raises(movielens.DataFileError, match=f"^{inter}:1001: expected 4 .* found 3"):
        load(small)


def test_a_file_cut_after_the_header_is_named(small):
    users = small / "ml-100k.user"
    users.write_bytes(users.read_bytes().split(b"\n")[0] + b"\n")
    with pytest.raises(movielens.DataFileError, match=f"^{users}:2: no data after the header"):
        load(small)
    users.write_bytes(b"")
    with pytest.raises(movielens.DataFileError, match=f"^{users}:1: empty file"):
        load(small)


@pytest.mark.parametrize(("ext", "lineno", "line", "message"), [
    ("user", 7, b"7\tfifty\tM\tengineer\t11111", "column 'age' is not a number: 'fifty'"),
    ("item", 4, b"Four Rooms (1995)\t1995", r"expected \d+ tab-separated fields, found 2"),
    ("item", 9, b"\xff\xfebinary", "not UTF-8 text"),
    ("inter", 12, b"100k_1\tToy Story (1995)\t55\t881250949", "rating '55' outside 0-5"),
    ("inter", 30, b"100k_1\tToy Story (1995)\t4\tnan", "column 'timestamp' is not a number"),
])
def test_malformed_lines_are_named(small, ext, lineno, line, message):
    path = small / f"ml-100k.{ext}"
    if ext == "user":  # keep the user id the ratings refer to; break only the age
        first = path.read_bytes().split(b"\n")[lineno - 1].split(b"\t")[0]
        line = first + line[line.index(b"\t"):]
    edit(path, lineno, line)
    with pytest.raises(movielens.DataFileError, match=f"^{path}:{lineno}: {message}"):
        load(small)
    assert not list((small.parent / "cache").rglob("*.npz"))  # nothing cached from bad data


def test_damaged_cache_file_is_rebuilt(small):
    want = load(small)[0]["item_id"]
    (path,) = (small.parent / "cache" / "data").glob("*.npz")
    path.write_bytes(path.read_bytes()[:1000])  # e.g. a disk that filled up behind our back
    with pytest.warns(UserWarning, match="unreadable cache file.*rebuilding"):
        got = load(small)[0]["item_id"]
    np.testing.assert_array_equal(got, want)
    with np.load(path) as npz:  # the rebuilt file is whole
        np.testing.assert_array_equal(npz["item_id"][: len(want)], want)


def test_kill_9_mid_write_leaves_no_cache_file(small):
    """A process killed while writing the cache leaves only a temporary file, which is never
    read; the next load builds the cache and removes the orphan."""
    ready = small.parent / "writing"
    script = textwrap.dedent(f"""
        import time, numpy as np
        from lmn_tf.data import movielens

        def slow_savez(f, **arrays):  # half the bytes, then hang until killed
            f.write(b"PK" + b"x" * 100_000)
            f.flush()
            open({str(ready)!r}, "w").close()
            time.sleep(600)

        np.savez = slow_savez
        movielens.load("ml-100k", data_dir={str(small)!r}, progress=False)
    """)
    env = {**os.environ, "LMN_TF_CACHE": str(small.parent / "cache")}
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, env=env)
    deadline = time.monotonic() + 120
    while not ready.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ready.exists(), "the writer never reached the write"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    files = sorted(p.name for p in (small.parent / "cache" / "data").iterdir())
    assert len(files) == 1 and files[0].endswith(f".npz.{proc.pid}.tmp"), files

    train, _, _ = load(small)  # the orphan is neither read nor left behind
    assert len(train["label"]) == 800
    assert [p.suffix for p in (small.parent / "cache" / "data").iterdir()] == [".npz"]


def test_orphans_of_live_writers_are_kept(tmp_path):
    live = tmp_path / f"ml-1m-0123.npz.{os.getpid()}.tmp"
    live.write_bytes(b"in progress")
    cache._remove_orphans(tmp_path)
    assert live.exists()
