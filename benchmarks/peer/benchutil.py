"""Small helpers shared by the peer harnesses (no torch/numpy import here).

Meant to be imported by any harness in this folder (the PyTorch peer, later our
TF layer) so that statistics and contention notes are computed the same way.
"""
import os
import statistics
import sys
import time

# glibc malloc settings for a steady-state measurement: big buffers come from the heap
# (no fresh mmap + page faults on every call) and the heap is not trimmed back to the OS.
# With glibc's defaults the cost of those page faults depends on what the process did
# before (its mmap threshold moves with the sizes freed so far): on this box the PKM
# forward at √n=100, H=4 took 590-615 ms in a fresh process, ~410 ms after other
# configs had run, and 330-410 ms with these settings.
TUNED_MALLOC = {"MALLOC_MMAP_THRESHOLD_": str(1 << 30), "MALLOC_TRIM_THRESHOLD_": str(1 << 32)}


def ensure_malloc(mode):
    """Re-exec this script once so glibc reads the malloc settings at start.

    mode 'tuned': TUNED_MALLOC set; 'default': none of them set. Call before heavy imports.
    """
    env = dict(os.environ)
    if mode == "tuned":
        env.update(TUNED_MALLOC)
    else:
        for k in TUNED_MALLOC:
            env.pop(k, None)
    if any(env.get(k) != os.environ.get(k) for k in TUNED_MALLOC):
        sys.stdout.flush()
        os.execve(sys.executable, [sys.executable, *sys.argv], env)


def malloc_env():
    return {k: os.environ.get(k) for k in TUNED_MALLOC}


def _summary(ms):
    ms = sorted(ms)
    q = statistics.quantiles(ms, n=4) if len(ms) >= 2 else [ms[0]] * 3
    return {"median": statistics.median(ms), "p25": q[0], "p75": q[2],
            "min": ms[0], "max": ms[-1], "n": len(ms)}


def stats_ms(ts, contended=None, min_quiet=3):
    """Seconds -> ms summary: median, quartiles, min/max and every run (in run order).

    With `contended` (one bool per run, see probe()/contended_run()), also the
    same summary over the runs during which no other process took CPU time
    ("quiet"), when at least `min_quiet` runs were quiet.
    """
    ms = [t * 1e3 for t in ts]
    out = _summary(ms)
    out["runs"] = [round(t, 3) for t in ms]
    if contended is not None:
        quiet = [t for t, c in zip(ms, contended, strict=False) if not c]
        out["contended_runs"] = sum(bool(c) for c in contended)
        out["quiet"] = _summary(quiet) if len(quiet) >= min_quiet else None
    return out


def loadavg():
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f
                        if line.startswith("model name"))
    except (OSError, StopIteration):
        return None


def _proc_stat():
    """(busy_s, steal_s) of the whole machine since boot, from /proc/stat."""
    try:
        with open("/proc/stat") as f:
            parts = f.readline().split()[1:]
    except OSError:
        return None
    v = [int(x) for x in parts]
    hz = os.sysconf("SC_CLK_TCK")
    user, nice, system, _idle, _iowait, irq, softirq, steal = (v + [0] * 8)[:8]
    return (user + nice + system + irq + softirq) / hz, steal / hz


def probe():
    """A point in time for contended_run(): (wall, own cpu, machine busy)."""
    st = _proc_stat()
    return time.perf_counter(), time.process_time(), (st[0] if st else None)


def contended_run(p0, p1, frac=0.15, floor_s=0.03):
    """(foreign_cpu_s, contended?) between two probes.

    foreign = machine busy - own process CPU (all threads). /proc/stat ticks are
    10 ms per CPU, so a run counts as contended only past floor_s + frac * wall.
    """
    if p0[2] is None or p1[2] is None:
        return None, False
    wall = p1[0] - p0[0]
    foreign = max(0.0, (p1[2] - p0[2]) - (p1[1] - p0[1]))
    return foreign, foreign > floor_s + frac * wall


def wait_quiet(max_wait_s=120.0, window_s=2.0, max_cores=0.1):
    """Sleep until other processes use < max_cores over a window (or max_wait_s).

    Returns (seconds waited, quiet reached?)."""
    t0 = time.perf_counter()
    while True:
        p0 = probe()
        time.sleep(window_s)
        p1 = probe()
        if p0[2] is None:
            return 0.0, None
        foreign, _ = contended_run(p0, p1)
        if foreign / window_s < max_cores:
            return round(time.perf_counter() - t0, 1), True
        if time.perf_counter() - t0 >= max_wait_s:
            return round(time.perf_counter() - t0, 1), False


class Contention:
    """CPU time other processes burned while a measurement ran.

    foreign_cpu_s = machine busy time - this process's own CPU time (threads
    included); on an otherwise idle box it stays near 0. steal_s is time the
    hypervisor gave our vCPUs to someone else. Both are rough (tick resolution).
    """

    def __enter__(self):
        self._m0 = _proc_stat()
        t = os.times()
        self._own0 = t.user + t.system
        self._w0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        m1 = _proc_stat()
        t = os.times()
        own = t.user + t.system - self._own0
        wall = time.perf_counter() - self._w0
        if self._m0 is None or m1 is None:
            self.result = None
            return False
        busy = m1[0] - self._m0[0]
        self.result = {"wall_s": round(wall, 2), "own_cpu_s": round(own, 2),
                       "foreign_cpu_s": round(max(0.0, busy - own), 2),
                       "steal_s": round(m1[1] - self._m0[1], 2),
                       "loadavg_end": loadavg()}
        return False


def median_used(s):
    """(median ms, basis): of the quiet runs when there were enough, else of all runs."""
    if s.get("quiet"):
        return s["quiet"]["median"], "quiet"
    return s["median"], "all"
