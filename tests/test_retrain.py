"""The lab retraining loop end to end on a tiny fixture set:
pre-label -> import edited labels -> move the label set -> 1-epoch fine-tune -> promotion gate (a worse
candidate is rejected)."""

import json
import shutil
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
from synth import smear, write_yolo_dataset

from leukoscan.cards import sha256
from leukoscan.config import DETECTOR_WEIGHTS
from leukoscan.datasets.build import read_yolo
from leukoscan.detect.labels import LabelError, import_labels, tile_labset, unreviewed
from leukoscan.detect.predict import Detector
from leukoscan.detect.prelabel import prelabel
from leukoscan.detect.registry import finetune, promote, read_registry
from leukoscan.detect.train import FINETUNE
from leukoscan.registry import WeightsRegistry


@pytest.fixture(scope="module")
def loop(tmp_path_factory):
    root = tmp_path_factory.mktemp("retrain")
    lab = root / "lab_photos"
    lab.mkdir()
    truth = {}
    for i in range(6):
        img, boxes = smear((600, 800), rbc_px=40, wbc_px=68, n_rbc=70, n_wbc=3, seed=200 + i)
        cv2.imwrite(str(lab / f"photo {i}.jpg"), img[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
        truth[f"photo {i}"] = boxes
    current = root / "weights" / "detector.pt"
    current.parent.mkdir()
    shutil.copyfile(DETECTOR_WEIGHTS, current)
    regression = write_yolo_dataset(root / "regression", n_train=6, n_val=3)
    text = regression.read_text().replace("val: images/val", "val: images/val\ntest: images/val")
    regression.write_text(text)
    return {"root": root, "lab": lab, "truth": truth, "current": current, "regression": regression}


def test_prelabel_writes_yolo_coco_and_overlays(loop):
    labset = loop["root"] / "labset"
    counts = prelabel(Detector(loop["current"], "cpu"), loop["lab"], labset, log=lambda m: None)
    assert counts["images"] == 6
    assert len(list((labset / "labels").glob("*.txt"))) == 6 and len(list((labset / "overlays").glob("*.jpg"))) == 6
    coco = json.loads((labset / "annotations.coco.json").read_text())
    assert len(coco["images"]) == 6 and coco["categories"][0]["name"] == "white_cell"
    # cells are proposed on every photo (detector or segmentation), at the photographs' own resolution:
    # review images as large as the photographs, boxes (COCO and YOLO) in their pixels
    assert len(coco["annotations"]) >= 6 * 3 * 0.8
    assert cv2.imread(str(labset / "images" / "photo 0.png")).shape == (600, 800, 3)
    assert {(im["width"], im["height"]) for im in coco["images"]} == {(800, 600)}
    assert 0.7 * 68 < np.median([a["bbox"][2] for a in coco["annotations"]]) < 1.4 * 68
    yolo_lines_before = (labset / "labels" / "photo 0.txt").read_text()
    yolo = read_yolo(labset / "labels" / "photo 0.txt", 800, 600).xyxy
    assert 0.7 * 68 < np.median(yolo[:, 2] - yolo[:, 0]) < 1.4 * 68
    # each photograph's cell size, for the tiles; lists relative to the label set (it can move)
    assert set(json.loads((labset / "cell_px.json").read_text())) == {f"photo {i}.png" for i in range(6)}
    listed = (labset / "train.txt").read_text().splitlines() + (labset / "val.txt").read_text().splitlines()
    assert sorted(listed) == [f"./images/photo {i}.png" for i in range(6)]
    assert str(loop["root"]) not in (labset / "data.yaml").read_text()
    # every photograph's labels are the pre-labels as written, until edited (by any tool) or imported
    assert unreviewed(labset) == [f"photo {i}.png" for i in range(6)]
    # run again on the same photographs: the labels there (maybe reviewed) are kept, not pre-labelled afresh
    (labset / "labels" / "photo 0.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    assert unreviewed(labset) == [f"photo {i}.png" for i in range(1, 6)]
    again = prelabel(Detector(loop["current"], "cpu"), loop["lab"], labset, log=lambda m: None)
    assert again["images"] == 0 and len(again["kept"]) == 6
    assert (labset / "labels" / "photo 0.txt").read_text() == "0 0.5 0.5 0.1 0.1\n"
    (labset / "labels" / "photo 0.txt").write_text(yolo_lines_before)
    twins = loop["root"] / "twins"
    twins.mkdir()
    for name in ("cell.jpg", "cell.png"):
        shutil.copyfile(loop["lab"] / "photo 1.jpg", twins / name)
    with pytest.raises(ValueError, match="would both be labelled as cell.png"):
        prelabel(Detector(loop["current"], "cpu"), twins, loop["root"] / "twins-labset", log=lambda m: None)
    unreadable = loop["root"] / "unreadable"
    unreadable.mkdir()
    (unreadable / "a.jpg").write_bytes(b"not a picture")
    with pytest.raises(ValueError, match="no readable images"):  # and no empty label set left behind
        prelabel(Detector(loop["current"], "cpu"), unreadable, loop["root"] / "empty-labset", log=lambda m: None)
    assert not (loop["root"] / "empty-labset").exists()


def reviewed_coco(labset: Path, truth: dict) -> dict:
    """What a reviewer sends back: the true cells, in the label set's image coordinates."""
    images, annotations = [], []
    for i, (stem, boxes) in enumerate(sorted(truth.items()), start=1):
        h, w = cv2.imread(str(labset / "images" / f"{stem}.png")).shape[:2]
        s = w / 800
        images.append({"id": i, "file_name": f"{stem}.png", "width": w, "height": h})
        for x0, y0, x1, y1 in boxes * s:
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": i,
                    "category_id": 1,
                    "bbox": [float(x0), float(y0), float(x1 - x0), float(y1 - y0)],
                }
            )
    return {"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "white_cell"}]}


def test_import_validates_and_reports_every_problem(loop):
    labset = loop["root"] / "labset"
    before = {p.name: p.read_text() for p in (labset / "labels").glob("*.txt")}
    bad = reviewed_coco(labset, loop["truth"])
    bad["annotations"].append({"id": 900, "image_id": 1, "category_id": 1, "bbox": [5000, 10, 20, 20]})
    bad["annotations"].append({"id": 901, "image_id": 1, "category_id": 7, "bbox": [10, 10, 20, 20]})
    bad["images"].append({"id": 99, "file_name": "unknown.png", "width": 10, "height": 10})
    (loop["root"] / "bad.json").write_text(json.dumps(bad))
    with pytest.raises(LabelError) as e:
        import_labels(labset, loop["root"] / "bad.json")
    problems = "\n".join(e.value.problems)
    assert "outside" in problems and "unknown class" in problems and "unknown.png" in problems
    assert {p.name: p.read_text() for p in (labset / "labels").glob("*.txt")} == before  # nothing written
    yolo = loop["root"] / "yolo_bad"
    yolo.mkdir()
    (yolo / "photo 0.txt").write_text("3 0.5 0.5 0.1 0.1\nnot a box\n")
    (yolo / "ghost.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    with pytest.raises(LabelError) as e:
        import_labels(labset, yolo)
    assert len(e.value.problems) == 3
    # what would lose labels without a word, or stop with a traceback: each a LabelError, nothing written
    good = reviewed_coco(labset, loop["truth"])
    broken = {
        "partial": {**good, "images": good["images"][1:]},  # an image left out would be emptied
        "no boxes": {**good, "annotations": []},
        "string annotation": {**good, "annotations": ["box"]},
        "bbox null": {**good, "annotations": [{**good["annotations"][0], "bbox": None}]},
        "bbox of 3": {**good, "annotations": [{**good["annotations"][0], "bbox": [1, 2, 3]}]},
        "bbox nan": {**good, "annotations": [{**good["annotations"][0], "bbox": [float("nan"), 1, 2, 3]}]},
        "no id": {**good, "images": [{k: v for k, v in im.items() if k != "id"} for im in good["images"]]},
        # a width that is no number (a traceback before), or a width and height at two scales (every box of the
        # image would be moved): the image is refused, its annotations not each a line of their own
        "width text": {**good, "images": [{**good["images"][0], "width": "abc"}, *good["images"][1:]]},
        "aspect": {
            **good,
            "images": [{**good["images"][0], "width": 2 * good["images"][0]["width"]}, *good["images"][1:]],
        },
        "list id": {**good, "images": [{**good["images"][0], "id": [1]}, *good["images"][1:]]},  # a traceback before
        "no image_id": {
            **good,
            "annotations": [{k: v for k, v in a.items() if k != "image_id"} for a in good["annotations"]],
        },
    }
    for what, coco in broken.items():
        (loop["root"] / "broken.json").write_text(json.dumps(coco))
        with pytest.raises(LabelError) as e:
            import_labels(labset, loop["root"] / "broken.json")
        if what in ("width text", "aspect"):
            assert len(e.value.problems) == 1 and "no usable id, width, height" in e.value.problems[0], what
    partial = loop["root"] / "yolo_partial"
    partial.mkdir()
    (partial / "photo 0.txt").write_text("0 nan 0.5 0.1 0.1\n")
    with pytest.raises(LabelError) as e:
        import_labels(labset, partial)
    assert "not numbers" in e.value.problems[0]
    (partial / "photo 0.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    with pytest.raises(LabelError, match="5 image\\(s\\) of the label set are not in yolo_partial"):
        import_labels(labset, partial)
    assert {p.name: p.read_text() for p in (labset / "labels").glob("*.txt")} == before


def test_annotations_of_an_image_id_no_coco_image_has_are_one_line(loop):
    labset = loop["root"] / "labset"
    good = reviewed_coco(labset, loop["truth"])
    unknown = {**good, "annotations": [{**a, "image_id": 77} for a in good["annotations"]]}
    (loop["root"] / "unknown.json").write_text(json.dumps(unknown))
    with pytest.raises(LabelError) as e:
        import_labels(labset, loop["root"] / "unknown.json")
    assert f"{len(good['annotations'])} annotation(s) of image_id 77, which no COCO image has" in e.value.problems
    assert len(e.value.problems) <= 2  # and, as every image is left without boxes, one line saying so


def test_tiles_keep_the_training_scale_and_the_photo_split(loop):
    labset = loop["root"] / "labset"
    data = tile_labset(labset)
    tiles = data.parent
    train, val = ((tiles / f"{s}.txt").read_text().splitlines() for s in ("train", "val"))
    assert train and val
    photo = lambda t: Path(t).stem.rsplit("__", 1)[0]  # noqa: E731
    assert not {photo(t) for t in train} & {photo(t) for t in val}  # a photograph is on one side only
    for t in train + val:
        assert t.startswith("./images/") and cv2.imread(str(tiles / t)).shape == (224, 224, 3)
    # every labelled cell survives tiling at least once, at the training scale (68 px cells -> ~27 px)
    stems = [
        Path(p).stem
        for p in (labset / "train.txt").read_text().splitlines() + (labset / "val.txt").read_text().splitlines()
    ]
    n_boxes = sum(len((labset / "labels" / f"{s}.txt").read_text().splitlines()) for s in stems)
    tile_boxes = np.concatenate(
        [read_yolo(tiles / "labels" / f"{Path(t).stem}.txt", 224, 224).xyxy for t in train + val]
    )
    assert len(tile_boxes) >= n_boxes
    assert 0.7 * 27 < np.median(tile_boxes[:, 2:] - tile_boxes[:, :2]) < 1.4 * 27


def test_fine_tuning_starts_from_the_given_weights(loop):
    """With a zero learning rate, one epoch from the current weights must leave the convolutions as they were
    (a run that silently re-initialised the model, as Ultralytics does with pretrained=False, would not)."""
    import torch

    from leukoscan.training import fit

    recipe = replace(FINETUNE, epochs=1, batch=4, workers=0, imgsz=64, mosaic=0.0)
    model, _ = fit(
        loop["current"],
        "detect",
        loop["regression"],
        loop["root"] / "zero_lr",
        "zero",
        recipe,
        "cpu",
        optimizer="SGD",
        lr0=0.0,
        warmup_epochs=0,
    )
    start = torch.load(loop["current"], map_location="cpu", weights_only=False)["model"].float().state_dict()
    after = torch.load(model.trainer.last, map_location="cpu", weights_only=False)["model"].float().state_dict()
    conv = [k for k in start if k.endswith("conv.weight")]
    assert conv and all(torch.allclose(start[k], after[k]) for k in conv)


def test_import_move_finetune_and_gate(loop):
    labset = loop["root"] / "labset"
    (loop["root"] / "reviewed.json").write_text(json.dumps(reviewed_coco(labset, loop["truth"])))
    report = import_labels(labset, loop["root"] / "reviewed.json")
    assert report["boxes"] == 18 and report["images_without_boxes"] == [] and unreviewed(labset) == []
    # the label set moved to another folder (another machine): nothing in it names where it was
    moved = loop["root"] / "elsewhere" / "labset"
    moved.parent.mkdir()
    shutil.move(labset, moved)
    labset = moved
    assert not any(str(loop["root"] / "labset") in f.read_text() for f in labset.glob("*.*"))
    tiny = replace(FINETUNE, epochs=1, batch=4, workers=0, imgsz=320)
    replay = loop["regression"].parent / "images" / "train"
    candidate = finetune(labset, loop["current"], replay, loop["root"] / "ft", tiny, replay_n=3, device="cpu")
    recipe = json.loads(candidate.with_suffix(".json").read_text())
    assert recipe["replay_images"] == 3 and recipe["parent_sha256"] == sha256(loop["current"])

    # a worse candidate (one epoch from scratch) must be rejected, and the registry records both models
    from leukoscan.detect.train import DetectorRecipe, train

    worse, _ = train(
        loop["regression"],
        loop["root"] / "scratch",
        "worse",
        DetectorRecipe(imgsz=64, epochs=1, batch=4, workers=0, mosaic=0.0),
        device="cpu",
    )
    original = sha256(loop["current"])
    result = promote(worse, loop["current"], loop["regression"], tile_labset(labset), device="cpu")
    assert result["promoted"] is False and sha256(loop["current"]) == original
    assert not (loop["current"].parent / "val").exists()  # the gate's scoring leaves nothing in the weights folder
    assert "may drop by 0.02 at most" in result["reason"]
    entries = read_registry(loop["current"])
    assert [e["status"] for e in entries] == ["initial", "rejected"]
    assert (
        entries[1]["parent"] == original
        and entries[1]["metrics"]["lab"]["mAP50"] < entries[0]["metrics"]["lab"]["mAP50"]
    )

    # the fine-tuned candidate goes through the same gate; if promoted, rollback restores the original
    result = promote(candidate, loop["current"], loop["regression"], tile_labset(labset), device="cpu")
    entries = read_registry(loop["current"])
    assert entries[-1]["status"] == ("promoted" if result["promoted"] else "rejected")
    if result["promoted"]:
        assert sha256(loop["current"]) == sha256(candidate)
        for wrong in ("", "*", original[:5], "f" * 12 if not original.startswith("f") else "0" * 12):
            with pytest.raises(ValueError, match="archived"):  # never a guess: a unique prefix of an archived one
                WeightsRegistry(loop["current"]).rollback(wrong)
        WeightsRegistry(loop["current"]).rollback(original)
        assert sha256(loop["current"]) == original and read_registry(loop["current"])[-1]["status"] == "rolled back"


def test_finetune_keeps_a_candidate_warns_of_unreviewed_labels_and_says_when_interrupted(loop, monkeypatch):
    from typer.testing import CliRunner

    import leukoscan.detect.registry
    from leukoscan.detect.labels import PRELABELS, text_sha256
    from leukoscan.pipeline import app

    labset = loop["root"] / "elsewhere" / "labset"  # reviewed (imported) and moved, by the test above
    base = ["detect", "finetune", str(labset), "--from", str(loop["current"]), "--replay-n", "0"]
    result = CliRunner().invoke(app, [*base, "--out", str(loop["root"] / "ft")])
    assert result.exit_code == 2 and "candidate.pt exists" in result.output, result.output
    # a photograph whose labels are still the pre-labels: a warning before training (here interrupted at once)
    label = labset / "labels" / "photo 2.txt"
    (labset / PRELABELS).write_text(json.dumps({label.name: text_sha256(label.read_text())}))

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(leukoscan.detect.registry, "finetune", interrupted)
    result = CliRunner().invoke(app, [*base, "--out", str(loop["root"] / "ft2")])
    assert result.exit_code == 130 and "no new candidate written" in result.output, result.output
    assert "1 of 6 photographs still hold their pre-labels" in result.output and "photo 2.png" in result.output
    result = CliRunner().invoke(app, [*base, "--out", str(loop["root"] / "ft"), "--overwrite"])
    assert result.exit_code == 130, result.output  # --overwrite lets it train into a folder with a candidate


def test_a_corrupt_registry_is_one_line_before_any_scoring(tmp_path):
    current = tmp_path / "detector.pt"
    assert read_registry(current) == []
    (tmp_path / "registry.json").write_text("{not json")
    with pytest.raises(ValueError, match="registry.json is not a readable registry"):
        read_registry(current)
    (tmp_path / "registry.json").write_text('{"a": 1}')
    with pytest.raises(ValueError, match="is not a registry"):
        read_registry(current)


def test_rollback_to_weights_archived_without_a_card_leaves_no_other_models_card(tmp_path):
    current = shutil.copyfile(DETECTOR_WEIGHTS, tmp_path / "detector.pt")
    WeightsRegistry(current).archive(current, tmp_path / "no-card.json")  # archived as weights without a card were
    current.write_bytes(b"a later detector")
    (tmp_path / "detector.json").write_text(json.dumps({"sha256": "of the later detector", "metrics": {}}))
    WeightsRegistry(current).rollback(sha256(DETECTOR_WEIGHTS)[:8])
    card = json.loads((tmp_path / "detector.json").read_text())
    assert card["sha256"] == sha256(DETECTOR_WEIGHTS) == sha256(current) and "metrics" not in card


def test_prelabel_says_which_photographs_are_no_usable_smear(tmp_path):
    """A blank photograph, which `run` would call unusable, is pre-labelled with a warning and listed (the
    reviewer removes it unless it is one), the smear beside it without."""
    photos = tmp_path / "photos"
    photos.mkdir()
    img, _ = smear((600, 800), rbc_px=40, wbc_px=68, n_rbc=70, n_wbc=3, seed=300)
    cv2.imwrite(str(photos / "smear.jpg"), img[..., ::-1])
    cv2.imwrite(str(photos / "blank.jpg"), np.full((600, 800, 3), 240, np.uint8))
    said = []
    counts = prelabel(Detector(DETECTOR_WEIGHTS, "cpu"), photos, tmp_path / "labset", cell_size=68, log=said.append)
    assert [n.split(":")[0] for n in counts["not_smears"]] == ["blank.png"]
    assert any(m.startswith("warning: blank.png does not look like a usable smear") for m in said)
