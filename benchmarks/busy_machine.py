"""Threading on an idle and on a busy machine.

Fits one problem in a fresh process per setting, idle and with background
processes that each keep one core busy, and prints the wall time of each:
the default threading against one thread and against OpenMP's wait policies.

    python benchmarks/busy_machine.py                       # InstEval ML, 1 busy core
    python benchmarks/busy_machine.py --busy 1 --repeats 3

Settings: "default" (multilevel's defaults: all cores, passive waiting),
"threads=1" (``multilevel.set_num_threads(1)``), "spin 300k"
(``GOMP_SPINCOUNT=300000``: libgomp's own default of spinning a while before
sleeping, what multilevel did before it chose passive waiting), "active"
(``OMP_WAIT_POLICY=ACTIVE``: threads spin at barriers).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

FIT = """
import time, warnings
warnings.simplefilter("ignore")
import multilevel
from multilevel.datasets import load_dataset
data = load_dataset("InstEval")
if {threads} is not None:
    multilevel.set_num_threads({threads})
t0 = time.perf_counter()
multilevel.lmm("y ~ 1 + service + (1 | s) + (1 | d) + (1 | dept)", data, reml=False, progress=False)
print(time.perf_counter() - t0)
"""

SETTINGS = {
    "default": ({}, None),
    "threads=1": ({}, 1),
    "spin 300k": ({"GOMP_SPINCOUNT": "300000"}, None),  # libgomp's own default, before multilevel chose passive
    "active": ({"OMP_WAIT_POLICY": "ACTIVE"}, None),
}


def run(setting: str) -> float:
    env_extra, threads = SETTINGS[setting]
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    env.update(env_extra)
    out = subprocess.run([sys.executable, "-c", FIT.format(threads=threads)], capture_output=True, text=True,
                         env=env, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--busy", type=int, default=1, help="background processes keeping a core busy")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    print(f"{os.cpu_count()} cores; busy run: {args.busy} spinning process(es)")
    for label, nbusy in (("idle", 0), ("busy", args.busy)):
        spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(nbusy)]
        try:
            time.sleep(0.5 if nbusy else 0.0)
            for setting in SETTINGS:
                times = sorted(run(setting) for _ in range(args.repeats))
                print(f"{label:5s} {setting:10s} median {times[len(times) // 2]:7.2f} s  (all: "
                      f"{', '.join(f'{t:.2f}' for t in times)})", flush=True)
        finally:
            for p in spinners:
                p.kill()


if __name__ == "__main__":
    main()
