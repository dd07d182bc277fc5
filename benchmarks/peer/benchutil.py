"""The shared timing module of every benchmark script (no torch/numpy import here).

Every script in benchmarks/ that times repeated calls does it here, so that both sides of a
comparison (ours against the PyTorch peer, keras3 against tf-keras, kernel against stock) get
the same statistics:

- ``time_call(fn, steps, warmup)``: ``steps`` consecutive calls of ``fn`` after ``warmup``
  untimed ones;
- ``time_rounds(cells, rounds, steps)``: round-robin over named cells (each round times
  ``steps`` calls of every cell in turn), so slow phases of a shared machine hit all alike.

Both return ``timings()``: "wall_ms" and "cpu_ms", the medians of every timed call's wall and
process CPU time (all threads; the steadier one under load), "calls", and the summaries
"wall" (``stats_ms``: quartiles, every call, and the quiet calls' summary, a call being
contended when other processes took CPU time meanwhile) and "cpu" (``_summary``).
``median_used(t["wall"])`` is the quiet calls' median when enough were quiet. Also: glibc
malloc settings and machine-load notes. This file is imported from this folder by the PyTorch
peer (its own venv: keep it standard-library only) and, with ``sys.path.insert(0,
.../peer)``, by the TF scripts one level up.
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


# --------------------------------------------------------------------------- timing


def _timed_call(fn):
    """(wall s, process CPU s, contended?) of one call; /proc/stat is read outside both."""
    m0 = _proc_stat()
    w0, c0 = time.perf_counter(), time.process_time()
    fn()
    c1, w1 = time.process_time(), time.perf_counter()
    m1 = _proc_stat()
    busy0, busy1 = (m[0] if m else None for m in (m0, m1))
    return w1 - w0, c1 - c0, contended_run((w0, c0, busy0), (w1, c1, busy1))[1]


def _timed_calls(fn, steps, extra=0, into=None):
    """Times calls of fn until `steps` of them were quiet or steps + extra were made (extra=0:
    exactly `steps`). Appends to and returns `into`: (wall s, cpu s, contended) lists."""
    wall, cpu, contended = into if into is not None else ([], [], [])
    made = quiet = 0
    while quiet < steps and made < steps + extra:
        w, c, busy = _timed_call(fn)
        wall.append(w)
        cpu.append(c)
        contended.append(busy)
        made, quiet = made + 1, quiet + (not busy)
    return wall, cpu, contended


def timings(wall_s, cpu_s, contended=None):
    """Seconds per call -> the summary every script reports (see the module docstring)."""
    wall = stats_ms(wall_s, contended)
    cpu = _summary([t * 1e3 for t in cpu_s])
    return {"wall_ms": wall["median"], "cpu_ms": cpu["median"], "calls": len(wall_s),
            "wall": wall, "cpu": cpu}


def time_call(fn, steps, warmup=0, extra=0):
    """`warmup` untimed calls of fn (tracing, compilation), then `steps` timed ones; with
    `extra`, up to `extra` more while fewer than `steps` were quiet. fn must block until its
    work is done (e.g. ``lambda: f().numpy()``). Returns timings()."""
    for _ in range(warmup):
        fn()
    return timings(*_timed_calls(fn, steps, extra))


def time_rounds(cells, rounds, steps=1, warmup=1, progress=None):
    """cells: name -> fn (as for time_call). `warmup` untimed calls of each, then `rounds`
    rounds, each timing `steps` consecutive calls of every cell in turn. Returns name ->
    timings() over all of a cell's calls. progress(iterable, desc) may wrap the loops (tqdm)."""
    progress = progress or (lambda it, desc: it)
    for fn in progress(list(cells.values()), "warmup"):
        for _ in range(warmup):
            fn()
    series = {name: ([], [], []) for name in cells}
    for _ in progress(range(rounds), "rounds"):
        for name, fn in cells.items():
            _timed_calls(fn, steps, into=series[name])
    return {name: timings(*s) for name, s in series.items()}
