"""Packaging: leukoscan installs one importable name, so Hugging Face's ``datasets`` (or any other ``detect``,
``classify``, ``pipeline``) beside it leaves both working; a built wheel (not editable) carries its weights
and demo slide and screens the demo from any folder."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def clean_env(**extra: str) -> dict:
    """The environment without this checkout on the Python path (as a user's shell has it)."""
    env = {
        k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",) and not k.startswith(("YOLO_", "LEUKOSCAN_"))
    }
    return {**env, **extra}


def test_other_packages_named_like_our_folders_still_import(tmp_path):
    """A fake Hugging Face ``datasets`` (and ``detect``, ``classify``, ``pipeline``) installed first: both it
    and leukoscan's own stages import, each from its own place, from any working folder."""
    site = tmp_path / "site"
    for name in ("datasets", "detect", "classify", "pipeline"):
        (site / name).mkdir(parents=True)
        (site / name / "__init__.py").write_text("OTHER = True\n")
    code = (
        "import datasets, detect, classify, pipeline; assert datasets.OTHER and detect.OTHER and classify.OTHER "
        "and pipeline.OTHER; import leukoscan.datasets.cells, leukoscan.detect.predict, leukoscan.classify.predict, "
        "leukoscan.pipeline as p; from leukoscan.config import WEIGHTS_DIR; print(datasets.__file__); "
        "print(leukoscan.datasets.cells.__file__); print(p.app.info.help is not None, WEIGHTS_DIR.is_dir())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=clean_env(PYTHONPATH=str(site))
    )
    assert out.returncode == 0, out.stderr
    theirs, ours, ok = out.stdout.splitlines()[-3:]
    assert Path(theirs).parent.parent == site and Path(ours).parent == ROOT / "datasets" and ok == "True True"


def test_every_import_of_our_parts_goes_through_leukoscan():
    """Imports inside functions too (``from datasets.cells import …`` in a command ran only from the
    checkout's root, and took Hugging Face's ``datasets`` where that is installed): every import of one of
    the repository's parts names it under ``leukoscan``."""
    import ast

    ours = {"datasets", "detect", "classify", "pipeline"}
    bad = []
    for folder in ("leukoscan", "datasets", "detect", "classify", "bench"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
                if isinstance(node, ast.ImportFrom) and not node.level and node.module:
                    names = [node.module]
                bad += [f"{path.relative_to(ROOT)}:{node.lineno} {n}" for n in names if n.split(".")[0] in ours]
    assert not bad, bad


@pytest.mark.slow
def test_a_built_wheel_screens_the_demo_from_any_folder(tmp_path):
    """``pip install .`` (not editable) into a folder of its own: the weights and the demo slide come with the
    package, and ``leukoscan run`` (no slide: the demo) works from an unrelated working folder."""
    import shutil

    # a copy of the sources (pip builds in the source folder: a stale build/ there must not reach the wheel)
    ignore = shutil.ignore_patterns(
        ".*", "build", "*.egg-info", "runs", "data", "logs", "results", "labset", "__pycache__", "bench", "tests"
    )
    source = shutil.copytree(ROOT, tmp_path / "source", symlinks=True, ignore=ignore)
    target = tmp_path / "installed"
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-compile",
            "--target",
            str(target),
            source,
        ],
        capture_output=True,
        text=True,
        env=clean_env(),
    )
    assert build.returncode == 0, build.stderr[-2000:]
    package = target / "leukoscan"
    for shipped in (
        "weights/detector.pt",
        "weights/classifier.pt",
        "weights/subtype.pt",
        "weights/classifier.json",
        "datasets/samples/EarlyPreb.jpeg",
        "pipeline.py",
        "detect/predict.py",
    ):
        assert (package / shipped).is_file(), shipped
    assert not (package / "pipeline.py").is_symlink()  # the link in the repository became the file
    assert not (package / "weights" / "lolo").exists()  # only what a run needs
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = clean_env(PYTHONPATH=str(target), LEUKOSCAN_HOME=str(tmp_path / "state"))
    where = subprocess.run(
        [sys.executable, "-c", "import leukoscan.config as c; print(c.__file__); print(c.WEIGHTS_DIR)"],
        capture_output=True,
        text=True,
        cwd=work,
        env=env,
        check=True,
    ).stdout.splitlines()
    assert where == [str(package / "config.py"), str(package / "weights")]
    run = subprocess.run(
        [str(target / "bin" / "leukoscan"), "run", "--out", "screened", "--device", "cpu"],
        capture_output=True,
        text=True,
        cwd=work,
        env=env,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    slides = sorted(p.parent.name for p in (work / "screened").glob("*/verdict.json"))
    assert len(slides) == 7 and (work / "screened" / "report.html").is_file()
