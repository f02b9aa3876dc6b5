import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from leukoscan import runtime  # noqa: E402

runtime.setup()  # as every entry point does
from leukoscan.config import DATA_ROOT  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures"
TALEQANI = DATA_ROOT / "all-taleqani"
needs_taleqani = pytest.mark.skipif(
    not (TALEQANI / "Original").is_dir(),
    reason=f"needs the Taleqani dataset at {TALEQANI} (set LEUKOSCAN_DATA to its parent folder)",
)


@pytest.fixture
def lock_holder():
    """``hold(lock)``: another process takes an flock on the file ``lock`` (flock is per open file: another process
    is the honest test) and writes ``pid N`` in it, as leukoscan does; the process is returned once it holds the
    lock (kill it to free the lock), and killed at the test's end whatever happens."""
    import subprocess

    held = []

    def hold(lock: Path) -> subprocess.Popen:
        holder = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import fcntl, os, sys, time\nf = open(sys.argv[1], 'a+'); fcntl.flock(f, fcntl.LOCK_EX)\n"
                "f.write(f'pid {os.getpid()}'); f.flush(); print('held', flush=True); time.sleep(60)",
                str(lock),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        held.append(holder)
        assert holder.stdout.readline().strip() == "held"
        return holder

    yield hold
    for holder in held:
        holder.kill()
        holder.wait()
