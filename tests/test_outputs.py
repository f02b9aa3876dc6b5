"""Output files (leukoscan/outputs.py): written whole or not at all, with the permissions a plain write gives, and
an error that names the file asked for."""

import os
import stat
from pathlib import Path

import pytest

from leukoscan import outputs


def test_an_output_file_gets_the_permissions_of_a_plain_write(tmp_path):
    """mkstemp's temporary file is the owner's alone (0600): the output follows the umask as any file would, so
    colleagues on shared storage can open the report and tables beside the overlays."""
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    written = outputs.write_text(tmp_path / "summary.csv", "a,b\n")
    assert stat.S_IMODE(written.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode) == outputs.file_mode()


def test_a_file_that_cannot_be_written_is_named_not_its_temporary_file(tmp_path):
    (tmp_path / "report.html").mkdir()  # a folder where the file goes
    with pytest.raises(OSError) as e:
        outputs.write_text(tmp_path / "report.html", "<html>")
    assert e.value.filename == str(tmp_path / "report.html")
    assert os.listdir(tmp_path) == ["report.html"]  # no temporary file left behind
    if Path("/proc/self").is_dir():  # a folder where no file can be made (root included): the file asked for
        with pytest.raises(OSError) as e:
            outputs.write_text(Path("/proc/leukoscan.json"), "{}")
        assert e.value.filename == "/proc/leukoscan.json"
