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
