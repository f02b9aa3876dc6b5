"""The Ray engine (leukoscan/ray_engine.py, ``run --engine ray``): the local engine's outputs from a local Ray,
from a two-node cluster that loses a node mid-run, and from a resumed run; and the local engine imports no Ray."""

import json
import subprocess
import sys
import threading
import time

import cv2
import pandas as pd
import pytest
from synth import smear, write_slide
from typer.testing import CliRunner

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Ray Data's own, about its own settings
ray = pytest.importorskip("ray", reason="the Ray engine needs the ray extra: pip install -e '.[test,ray]'")

from leukoscan.engine import slide_tasks  # noqa: E402
from leukoscan.journal import journal_path  # noqa: E402
from leukoscan.models import Models  # noqa: E402
from leukoscan.pipeline import app  # noqa: E402
from leukoscan.ray_engine import ActorShape, screen_slides_on_ray  # noqa: E402
from leukoscan.slide import Options, Slide  # noqa: E402

TABLES = ("cells.csv", "images.csv")
NAMES = ["slide0", "slide1"]


def run(*args):
    return CliRunner().invoke(app, ["run", *map(str, args), "--device", "cpu"])


def without_timings(verdict: dict) -> dict:
    return {k: v for k, v in verdict.items() if k not in ("seconds", "screened_at")}


def assert_same_outputs(a, b, names):
    """Byte-identical tables and summary, and the same verdicts but for their timings."""
    for name in names:
        for table in TABLES:
            assert (a / name / table).read_bytes() == (b / name / table).read_bytes(), f"{name}/{table}"
        verdicts = (json.loads((d / name / "verdict.json").read_text()) for d in (a, b))
        assert without_timings(next(verdicts)) == without_timings(next(verdicts))
    assert (a / "summary.csv").read_bytes() == (b / "summary.csv").read_bytes()


def journalled(out):
    """Each field's journal lines in ``out`` (resolved path -> how many times it was journalled)."""
    lines = journal_path(out).read_text().splitlines()
    return pd.Series([json.loads(line)["fingerprint"]["path"] for line in lines]).value_counts().to_dict()


@pytest.fixture(scope="module")
def slides(tmp_path_factory):
    """Two slides of four synthetic fields (and a file that is not an image: an error row), and the local
    engine's outputs for them, from a process that never imports Ray."""
    root = tmp_path_factory.mktemp("ray")
    folders = []
    for k in range(2):
        folder = root / f"slide{k}"
        write_slide(folder, 4, seed=60 + 10 * k)
        folders.append(folder)
    (folders[1] / "f4.png").write_bytes(b"not an image")
    args = ["run", *map(str, folders), "--out", str(root / "local"), "--batch", "2", "--device", "cpu"]
    code = (
        "import sys\nfrom leukoscan.pipeline import app\n"
        f"try:\n    app({args!r})\nexcept SystemExit as e:\n    assert e.code == 0, e.code\n"
        "assert 'ray' not in sys.modules, 'the local engine imported Ray'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    return folders, root / "local"


@pytest.fixture
def local_ray():
    """A local Ray of two CPUs for the engine to use (it joins a Ray this process started, and leaves it)."""
    if not ray.is_initialized():
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


class Bar:
    """A progress bar that counts what it is told."""

    def add_task(self, description, total):
        self.total, self.done = total, 0

    def update(self, task, description):
        pass

    def advance(self, task, n=1):
        self.done += n


def test_two_node_cluster_losing_a_node_mid_run_gives_the_local_outputs(slides, tmp_path):
    """Two single-core nodes, one actor each; the second node is removed as soon as the first field is
    journalled: Ray restarts its actor on the node left and retries its batches (and recomputes the results
    the node held), and every field is journalled once."""
    from ray.cluster_utils import Cluster

    folders, local = slides
    fast_failure_detection = {"health_check_period_ms": 500, "health_check_failure_threshold": 2}
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "object_store_memory": 100 * 2**20, "_system_config": fast_failure_detection},
    )
    worker = cluster.add_node(num_cpus=1, object_store_memory=100 * 2**20)
    cluster.wait_for_nodes()
    removed = threading.Event()

    def remove_worker_mid_run():
        journals = [journal_path(tmp_path / name) for name in NAMES]
        while not any(j.is_file() and j.stat().st_size for j in journals):
            time.sleep(0.02)
        cluster.remove_node(worker, allow_graceful=False)
        removed.set()

    remover = threading.Thread(target=remove_worker_mid_run, daemon=True)
    remover.start()
    try:
        inputs = [Slide.from_path(f) for f in folders]
        bar = Bar()
        verdicts = screen_slides_on_ray(
            Models.load(device="cpu", lazy=True),
            slide_tasks(inputs, tmp_path),
            Options(batch=1),
            bar,
            address=cluster.address,
        )
    finally:
        remover.join(timeout=60)  # (the run may end before the node is gone)
        cluster.shutdown()
    assert removed.is_set() and bar.done == bar.total == 9
    assert [v.slide for v in verdicts] == NAMES
    for name in NAMES:
        assert set(journalled(tmp_path / name).values()) == {1}
        for table in TABLES:
            assert (local / name / table).read_bytes() == (tmp_path / name / table).read_bytes()


def test_local_ray_gives_the_local_engines_outputs(slides, tmp_path, local_ray):
    folders, local = slides
    result = run(*folders, "--out", tmp_path, "--engine", "ray", "--batch", "2")
    assert result.exit_code == 0, result.output
    assert_same_outputs(local, tmp_path, NAMES)
    assert pd.read_csv(tmp_path / "slide1" / "images.csv").set_index("image").status["f4.png"] == "error"
    # usage statistics off: no Ray Data thread left behind querying a Prometheus on localhost:9090 every 10 s
    assert "data-usage-metrics-poller" not in {t.name for t in threading.enumerate()}


def test_a_run_stopped_halfway_resumes_on_ray_redoing_no_finished_field(slides, tmp_path, local_ray):
    """Half of each slide's fields screened by the local engine's seam (as a run stopped halfway leaves them),
    then the rest on Ray; a third slide whose outputs cannot be written gets one error line."""
    from leukoscan.slide import plan_slide, screen_batch, screening_key

    folders, local = slides
    models, opts = Models.load(device="cpu"), Options()
    opts.key = screening_key(models, opts)  # as `leukoscan run` screens them
    for folder, name in zip(folders, NAMES):
        plan = plan_slide(models, Slide.from_path(folder), tmp_path / name, opts)
        screen_batch(models, tmp_path / name, opts, plan, plan.todo[:2])
    before = {name: journal_path(tmp_path / name).read_text() for name in NAMES}
    (tmp_path / "slide2" / "overlays").mkdir(parents=True)  # a folder in the way of slide2's overlay file
    (tmp_path / "slide2" / "overlays" / "f0.jpg").mkdir()
    blocked = folders[0].parent / "slide2"
    blocked.mkdir(exist_ok=True)
    cv2.imwrite(str(blocked / "f0.png"), smear(seed=90)[0][..., ::-1])

    result = run(*folders, blocked, "--out", tmp_path, "--engine", "ray", "--batch", "2")
    assert result.exit_code == 0, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "slide slide2: could not write its outputs" in errors[0], result.output
    for name in NAMES:
        after = journal_path(tmp_path / name).read_text()
        assert after.startswith(before[name])  # the finished fields' lines are kept, and none is written again
        assert set(journalled(tmp_path / name).values()) == {1}
    summary = pd.read_csv(tmp_path / "summary.csv")
    assert list(summary.slide) == NAMES
    assert_same_outputs(local, tmp_path, NAMES)
    journals = {name: journal_path(tmp_path / name).read_text() for name in NAMES}
    result = run(*folders, "--out", tmp_path, "--engine", "ray", "--batch", "2")  # nothing left: aggregated again
    assert result.exit_code == 0, result.output
    assert {name: journal_path(tmp_path / name).read_text() for name in NAMES} == journals
    assert_same_outputs(local, tmp_path, NAMES)


def test_ray_address_needs_the_ray_engine_and_a_cluster_there(slides, tmp_path):
    result = run(tmp_path, "--ray-address", "auto")
    assert result.exit_code == 2 and "--ray-address needs --engine ray" in result.output
    # (an address that is not one: "auto" would join any cluster running on this machine)
    result = run(slides[0][0], "--out", tmp_path, "--engine", "ray", "--ray-address", "nowhere")
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: cannot join the Ray cluster at nowhere:"), result.output
    assert "Traceback" not in result.output
    # a HOST:PORT where nothing listens: one line at once (Ray itself waited for minutes)
    result = run(slides[0][0], "--out", tmp_path, "--engine", "ray", "--ray-address", "127.0.0.1:1")
    assert result.exit_code == 2 and "cannot join the Ray cluster at 127.0.0.1:1" in result.output, result.output


@pytest.mark.parametrize(
    "node_cpus, gpus, device, shape",
    [
        ([2.0], 0, "auto", ActorShape(1, 2.0, 0)),  # a laptop: one actor on all its cores
        ([8.0, 8.0, 4.0], 0, "auto", ActorShape(5, 4.0, 0)),  # the smallest machine's cores each
        ([16.0, 16.0], 4, "auto", ActorShape(4, 1, 1)),  # one actor per GPU
        ([16.0, 16.0], 4, "cpu", ActorShape(2, 16.0, 0)),  # --device cpu leaves the GPUs alone
    ],
)
def test_actor_shape_follows_the_cluster(node_cpus, gpus, device, shape):
    assert ActorShape.for_cluster(node_cpus, gpus, device) == shape
