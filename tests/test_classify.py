"""Classifier: 1-epoch training smoke run, batched == per-crop, temperature keeps the argmax, ECE."""

import cv2
import numpy as np
import pytest

from leukoscan.cells import CLASSES, cells
from leukoscan.classify.calibrate import apply_temperature, ece, fit_temperature
from leukoscan.classify.stain import crop_colour, hed_jitter, stain_distance, stain_reference

COLOURS = {"benign": (90, 40, 150), "early_pre_b": (150, 110, 200), "pre_b": (120, 60, 120), "pro_b": (180, 150, 230)}


def crop(key, seed):
    rng = np.random.default_rng(seed)
    img = np.full((64, 64, 3), 235, np.uint8)
    cv2.circle(img, (32 + rng.integers(-4, 5), 32 + rng.integers(-4, 5)), int(rng.integers(16, 22)), COLOURS[key], -1)
    return np.clip(img + rng.normal(0, 3, img.shape), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from leukoscan.classify.train import ClassifierRecipe, train

    root = tmp_path_factory.mktemp("crops")
    for split, n in (("train", 12), ("val", 4)):
        for key in CLASSES:
            (root / split / key).mkdir(parents=True)
            for i in range(n):
                cv2.imwrite(str(root / split / key / f"{i}.png"), crop(key, CLASSES.index(key) * 100 + i)[..., ::-1])
    recipe = ClassifierRecipe(imgsz=32, epochs=1, batch=16, workers=0)
    best, card = train(root, tmp_path_factory.mktemp("runs"), "smoke", recipe, device="cpu")
    assert best.is_file() and card["train_seconds"] > 0
    return best


def test_batched_equals_per_crop(tiny_model):
    from leukoscan.classify.predict import Classifier

    clf = Classifier(tiny_model, device="cpu")
    crops = np.stack([crop(k, i) for i, k in enumerate(CLASSES * 2)])
    batched = clf.probs(crops)
    single = np.concatenate([clf.probs(crops[i : i + 1]) for i in range(len(crops))])
    assert batched.shape == (8, 4)
    assert np.allclose(batched, single, atol=1e-4)
    assert np.allclose(batched.sum(axis=1), 1, atol=1e-4)


def test_a_model_of_one_batch_shape_gets_every_batch_padded_to_it_and_the_same_answers(tiny_model):
    """A backend that compiles again for every new input shape (OpenVINO INT8: ``fixed_batch``) is given batches of
    exactly that many crops, the last one padded with copies of its first; the padding's answers are dropped."""
    from leukoscan.classify.predict import Classifier

    clf = Classifier(tiny_model, device="cpu")
    crops = np.stack([crop(k, i) for i, k in enumerate(CLASSES * 3)])  # 12 crops
    plain = clf.probs(crops)
    first = crops[:3]
    assert clf.fixed_batch is None and clf.padded(first) is first  # PyTorch: batches as they come
    sizes, predict = [], clf.model.predict
    clf.model.predict = lambda chunk, **kw: sizes.append(len(chunk)) or predict(chunk, **kw)
    clf.fixed_batch = clf.batch = 5
    assert np.allclose(clf.probs(crops), plain, atol=1e-5)
    n = len(crops) * clf.views  # each crop in each of its test-time views
    assert n % 5 and sizes == [5] * -(-n // 5)  # the last batch, short, filled up to 5
    a, b = np.zeros(1), np.ones(1)
    assert [x is a for x in clf.padded([a, b])] == [True, False, True, True, True]  # a list: the same way


def test_subtype_is_asked_of_blasts_only(tiny_model):
    from leukoscan.cells import PROBS, SUBTYPE_PROBS, with_probs
    from leukoscan.classify.predict import SubtypeClassifier

    field = np.full((200, 200, 3), 235, np.uint8)
    probs = np.full((3, 9), 0.01)
    probs[[0, 1, 2], [0, 2, 0]] = 0.92  # blast, neutrophil, blast
    det = with_probs(cells([[10, 10, 40, 40], [150, 150, 200, 200], [80, 80, 120, 120]], [0.9, 0.8, 0.7]), probs)
    det = SubtypeClassifier(tiny_model, device="cpu")(field, det)
    sub = det.data[SUBTYPE_PROBS]
    assert sub.shape == (3, 3) and np.isnan(sub[1]).all() and np.allclose(sub[[0, 2]].sum(1), 1, atol=1e-5)
    assert det.class_id.tolist() == det.data[PROBS].argmax(1).tolist() == [0, 2, 0]


@pytest.fixture(scope="module")
def tiny_cell_model(tmp_path_factory):
    """Two epochs of the cell-type recipe (lab augmentation on, MixStyle and mixup too, each epoch's weights kept)
    on 9 tiny classes: weights, card, crop folder."""
    from leukoscan.cells import CELL_TYPES
    from leukoscan.classify.augment import LabAugment
    from leukoscan.classify.train import CellRecipe, train_cells

    root = tmp_path_factory.mktemp("cell-crops")
    for split, n in (("train", 6), ("val", 2)):
        for k, key in enumerate(CELL_TYPES):
            (root / split / key).mkdir(parents=True)
            for i in range(n + (k == 0) * 3 * (split == "train")):  # 9 blasts to train on, 6 of each other type
                cv2.imwrite(str(root / split / key / f"{i}.png"), crop("benign", k * 10 + i))
    best, card = train_cells(
        root,
        root / "runs",
        "smoke",
        CellRecipe(imgsz=32, epochs=2, batch=16, workers=0, save_period=1),
        device="cpu",
        augment=LabAugment(p_mixstyle=0.5, p_mixup=0.5),
    )
    return best, card, root


def test_mixup_blends_two_training_crops_and_their_targets(tiny_cell_model):
    """``LabAugment(p_mixup=1.0)``: every training crop is a blend of two and its target the same blend of their
    classes (probabilities summing to 1); the validation crops stay as they are, each with its class."""
    import torch

    from leukoscan.classify.augment import LabAugment, cell_trainer
    from leukoscan.runtime import setup

    _, _, root = tiny_cell_model
    setup()
    trainer = cell_trainer(LabAugment(p_mixup=1.0))(
        overrides={"model": "yolov8n-cls.yaml", "data": str(root), "imgsz": 32, "device": "cpu", "workers": 0}
        | {"project": str(root / "runs"), "name": "mixup"}
    )
    train = trainer.build_dataset(str(root / "train"), "train")
    targets = torch.stack([train[i]["cls"] for i in range(len(train))])
    assert targets.dtype == torch.float32 and torch.allclose(targets.sum(1), torch.ones(len(train)))
    assert ((targets > 0).sum(1) <= 2).all() and ((targets > 0).sum(1) == 2).any() and (targets < 1).any()
    val = trainer.build_dataset(str(root / "val"), "val")
    assert isinstance(val[0]["cls"], int)


def test_cell_type_trainer_smoke_and_physical_crops(tiny_cell_model):
    """One epoch of the cell-type recipe (lab augmentation on) on 9 tiny classes; the model crops a fixed
    physical window: the same cell at two magnifications gives the same crop (up to resampling)."""
    from leukoscan.cells import CELL_TYPES
    from leukoscan.classify.predict import CellClassifier

    best, card, _ = tiny_cell_model
    assert best.is_file() and card["augment"]["p_blur"] > 0 and card["augment"]["p_mixstyle"] == 0.5
    assert card["augment"]["p_mixup"] == 0.5
    clf = CellClassifier(best, device="cpu")
    assert clf.classes == CELL_TYPES
    assert not any(m._forward_hooks for m in clf.model.model.modules())  # MixStyle's hooks stayed in training
    rng = np.random.default_rng(0)
    field = cv2.GaussianBlur(rng.integers(0, 255, (120, 120, 3), dtype=np.uint8), (0, 0), 3)
    field[50:70, 40:60] = (120, 60, 170)  # a 20 px cell
    twice = cv2.resize(field, (240, 240), interpolation=cv2.INTER_LINEAR)
    small = clf.crops(field, cells([[40, 50, 60, 70]]), cell_px=20)
    # at 2x the detector's box may be looser, and the slide's cell size is twice as large: same crop
    large = clf.crops(twice, cells([[76, 96, 124, 144]]), cell_px=40)
    assert small.shape == large.shape == (1, clf.crop_px, clf.crop_px, 3)
    assert np.abs(small.astype(int) - large.astype(int)).mean() < 6
    box_relative = clf.crops(twice, cells([[70, 90, 130, 150]]), cell_px=40)  # the box does not set the window
    assert np.array_equal(large, box_relative)


def test_crop_geometry_comes_from_the_card(tiny_model, tmp_path):
    """A classifier trained on crops with more context is fed crops with that context at run time."""
    import json
    import shutil

    from leukoscan.classify.predict import Classifier
    from leukoscan.config import SETTINGS
    from leukoscan.crops import crop_cells

    weights = tmp_path / "wide.pt"
    shutil.copyfile(tiny_model, weights)
    field = np.random.default_rng(0).integers(0, 255, (200, 200, 3), dtype=np.uint8)
    box = cells([[80, 80, 120, 120]], [0.9])
    assert Classifier(weights, device="cpu").margin == SETTINGS.geometry.crop_margin  # no card: the default
    weights.with_suffix(".json").write_text(json.dumps({"geometry": {"crop_margin": 0.75, "crop_px": 64}}))
    clf = Classifier(weights, device="cpu")
    assert clf.margin == 0.75
    assert np.array_equal(clf.crops(field, box), crop_cells(field, box.xyxy, size=clf.imgsz, margin=0.75))


def test_temperature_changes_confidence_not_argmax():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet([0.3] * 4, size=200).astype(np.float32)
    for t in (0.5, 2.0, 5.0):
        scaled = apply_temperature(probs, t)
        assert (scaled.argmax(1) == probs.argmax(1)).all()
        assert np.allclose(scaled.sum(1), 1, atol=1e-5)
    assert apply_temperature(probs, 2.0).max(1).mean() < probs.max(1).mean()
    # labels drawn from `probs` make them calibrated; sharpened copies are over-confident:
    # the fitted temperature is > 1 and lowers the ECE
    probs = rng.dirichlet([1.0] * 4, size=2000)
    labels = np.array([rng.choice(4, p=p / p.sum()) for p in probs])
    sharp = apply_temperature(probs, 0.3)
    t = fit_temperature(sharp, labels)
    assert t > 1 and ece(apply_temperature(sharp, t), labels) < ece(sharp, labels)


def test_prior_correction_divides_by_the_training_share_and_temperature_keeps_its_argmax():
    """Strength 1: each class's probability divided by its share of the training crops (a class seen 7 times
    as often as the others loses that much); a uniform prior or strength 0 changes nothing; the temperature,
    applied after it, changes confidence and never the class on top."""
    from leukoscan.classify.calibrate import correct_prior

    rng = np.random.default_rng(0)
    probs = rng.dirichlet([0.5] * 4, size=300).astype(np.float32)
    prior = np.array([0.7, 0.1, 0.1, 0.1])
    assert correct_prior(probs, prior, 0.0) is probs
    assert np.allclose(correct_prior(probs, np.full(4, 0.25), 1.0), probs, atol=1e-6)
    corrected = correct_prior(probs, prior, 1.0)
    expected = probs / prior
    assert np.allclose(corrected, expected / expected.sum(1, keepdims=True), atol=1e-6)
    assert np.allclose(corrected.sum(1), 1, atol=1e-5) and (corrected[:, 0] <= probs[:, 0] + 1e-7).all()
    assert (corrected.argmax(1) == 0).sum() < (probs.argmax(1) == 0).sum()
    assert (correct_prior(probs, prior, 2.0).argmax(1) == 0).sum() <= (corrected.argmax(1) == 0).sum()
    for t in (0.5, 0.8, 3.0):
        assert (apply_temperature(corrected, t).argmax(1) == corrected.argmax(1)).all()


def test_the_other_types_share_what_p_blast_leaves_without_being_pulled_to_the_rare_ones():
    """``share_others``: P(blast) as the strong correction makes it, the other types in the proportions of the
    weaker one; rows sum to 1. On the shipped model, a card without ``others_strength`` scores as before (one
    correction for every type), and with it P(blast) is the same while fewer cells are called a rare type."""
    from leukoscan.cells import CELL_TYPES
    from leukoscan.classify.calibrate import correct_prior, share_others
    from leukoscan.classify.predict import CellClassifier

    rng = np.random.default_rng(1)
    plain = rng.dirichlet([0.5] * 4, size=200)
    prior = np.array([0.4, 0.4, 0.1, 0.1])  # class 0 the "blast"
    strong, weak = correct_prior(plain, prior, 2.0), correct_prior(plain, prior, 0.0)
    shared = share_others(strong, weak, 0)
    assert np.allclose(shared[:, 0], strong[:, 0]) and np.allclose(shared.sum(1), 1, atol=1e-5)
    assert np.allclose(
        shared[:, 1:] / shared[:, 1:].sum(1, keepdims=True), weak[:, 1:] / weak[:, 1:].sum(1, keepdims=True), atol=1e-5
    )
    assert (shared[:, 1:].argmax(1) == 0).sum() > (strong[:, 1:].argmax(1) == 0).sum()  # the common type, more often
    clf = CellClassifier(device="cpu")
    assert clf.others_strength == 0.0
    crops = np.stack([crop(key, seed) for seed in range(12) for key in COLOURS])
    now = clf.probs(crops)
    clf.others_strength = None  # a card of before: one correction
    before = clf.probs(crops)
    blast = CELL_TYPES.index("blast")
    assert np.allclose(now[:, blast], before[:, blast], atol=1e-6) and np.allclose(now.sum(1), 1, atol=1e-5)
    assert np.allclose(before, apply_temperature(clf.raw_probs(crops), clf.temperature), atol=1e-6)


def test_test_time_views_make_the_call_blind_to_how_a_cell_is_turned(tiny_model):
    """A cell has no up or left: averaged over its 8 rotations and mirror images, a model gives a crop and
    its turned or mirrored copies the same probabilities (over 4 views: the crop and its half turn)."""
    from leukoscan.classify.predict import CardScores, Classifier, dihedral_views

    crops = np.stack([crop(k, i) for i, k in enumerate(CLASSES * 2)])
    crops[:, 5:15, 5:30] = (30, 200, 30)  # something off centre, so that a turn shows
    views = dihedral_views(crops, 8)
    assert views.shape == (8 * len(crops), *crops.shape[1:])
    assert np.array_equal(views[: len(crops)], crops) and np.array_equal(views[len(crops) : 16], crops[:, :, ::-1])
    assert np.array_equal(views[16:24], crops[:, ::-1, ::-1])  # the half turn
    with pytest.raises(ValueError, match="1, 2, 4 or 8"):
        dihedral_views(crops, 3)

    def top_left(batch):  # a stand-in for a model that minds orientation: the colour of a strip at the top left
        strip = batch[:, :16, :32].mean((1, 2))
        logits = np.concatenate([strip, strip[:, :1] / 2], 1) / 20
        e = np.exp(logits - logits.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)

    clf = Classifier(tiny_model, device="cpu")
    assert clf.views == 1 and clf.prior_strength == 0  # a card without scores: as the model says
    clf.softmax = top_left
    turned, mirrored = np.rot90(crops, 1, axes=(1, 2)), crops[:, :, ::-1]
    assert not np.allclose(clf.probs(crops), clf.probs(turned), atol=1e-3)  # one view is not blind to turns
    clf.configure_scores(CardScores(views=8))
    probs = clf.probs(crops)
    assert np.allclose(probs.sum(1), 1, atol=1e-5)
    for copy in (turned, mirrored, np.rot90(mirrored, 3, axes=(1, 2))):
        assert np.allclose(probs, clf.probs(np.ascontiguousarray(copy)), atol=1e-6)
    clf.configure_scores(CardScores(views=4))
    assert np.allclose(clf.probs(crops), clf.probs(np.ascontiguousarray(crops[:, ::-1, ::-1])), atol=1e-6)
    assert not np.allclose(clf.probs(crops), clf.probs(turned), atol=1e-3)  # 4 views: a quarter turn still shows
    assert clf.probs(crops[:0]).shape == (0, len(CLASSES))
    real = Classifier(tiny_model, device="cpu")
    real.configure_scores(CardScores(views=8))  # the model itself, 8 views in one batch: as one view at a time
    assert np.allclose(
        real.raw_probs(crops), np.mean([real.softmax(v) for v in np.split(dihedral_views(crops, 8), 8)], 0), atol=1e-5
    )


def calibration_folder(tmp_path, crops):
    """The shipped cell-type model (one epoch on tiny crops tells nothing, and no temperature would fit it) and
    a training folder for it: the tiny crops as train/, and a val/ where the model is right on three crops in four
    (its own calls) and wrong on the fourth (its second call)."""
    import shutil

    from leukoscan.cells import CELL_TYPES
    from leukoscan.classify.predict import CellClassifier
    from leukoscan.config import CLASSIFIER_WEIGHTS

    weights = tmp_path / "cells.pt"
    shutil.copyfile(CLASSIFIER_WEIGHTS, weights)
    shutil.copyfile(CLASSIFIER_WEIGHTS.with_suffix(".json"), weights.with_suffix(".json"))
    folder = tmp_path / "crops"
    shutil.copytree(crops / "train", folder / "train")
    val = np.stack([crop(key, seed) for seed in range(6) for key in COLOURS])
    calls = np.argsort(-CellClassifier(weights, device="cpu").probs(val), axis=1)
    for i, (image, order) in enumerate(zip(val, calls)):
        label = CELL_TYPES[order[0] if i % 4 else order[1]]
        (folder / "val" / label).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / "val" / label / f"{i}.png"), image[..., ::-1])
    return weights, folder


def test_calibrate_rewrites_a_cell_models_scores_from_its_training_folder(tiny_cell_model, tmp_path):
    """``classify calibrate``: the class prior from the training crops (9 blasts, 6 of each other type), the
    test-time views asked for, and a temperature fitted on val with them; the classifier runs as it says."""
    import json

    from typer.testing import CliRunner

    from leukoscan.cells import CELL_TYPES
    from leukoscan.classify.predict import CellClassifier
    from leukoscan.pipeline import app

    weights, folder = calibration_folder(tmp_path, tiny_cell_model[2])
    args = ["classify", "calibrate", "--weights", str(weights), "--data", str(folder), "--device", "cpu"]
    result = CliRunner().invoke(app, [*args, "--test-time-views", "2", "--prior-correction", "0.5"])
    assert result.exit_code == 0, result.output
    card = json.loads(weights.with_suffix(".json").read_text())
    assert card["test_time_views"] == 2 and card["prior_correction"]["strength"] == 0.5
    prior = card["prior_correction"]["class_prior"]
    assert prior["blast"] == round(9 / 57, 6) and prior["neutrophil"] == round(6 / 57, 6) and len(prior) == 9
    assert card["temperature"] > 0 and "val_ece_after" in card and "recipe" in card  # the rest of the card kept
    clf = CellClassifier(weights, device="cpu")
    assert (clf.views, clf.prior_strength, clf.temperature) == (2, 0.5, card["temperature"])
    assert np.allclose(clf.prior, [prior[key] for key in CELL_TYPES])
    assert CliRunner().invoke(app, [*args, "--test-time-views", "3"]).exit_code == 2


def test_stain_jitter_and_distance():
    rng = np.random.default_rng(0)
    crops = np.stack([crop("benign", i) for i in range(20)])
    jittered = hed_jitter(crops[0], rng)
    assert jittered.shape == crops[0].shape and jittered.dtype == np.uint8 and not np.array_equal(jittered, crops[0])
    ref = stain_reference(crops)
    assert stain_distance(np.median(crop_colour(crops), axis=0), ref) < 1.0
    green = crops.copy()
    green[..., 1] = np.minimum(green[..., 1].astype(int) + 120, 255)
    assert stain_distance(np.median(crop_colour(green), axis=0), ref) > 3.0
    assert stain_distance(None, ref) is None and stain_distance([50, 0, 0], None) is None


def test_reinhard_maps_two_labs_colours_of_the_same_cells_onto_one():
    """The same cells under another lab's stain and camera (a colour cast and a contrast change) come out of
    the slide-level normalisation as they do from the first lab."""
    from leukoscan.classify.stain import lab_stats, reinhard

    crops = np.stack([crop(key, i) for i, key in enumerate(CLASSES * 3)])
    other_lab = np.clip(crops.astype(np.float32) * [0.85, 1.0, 1.1] + [10, -5, 0], 0, 255).astype(np.uint8)
    reference = ([75.0, 10.0, -15.0], [12.0, 14.0, 18.0])
    a, b = (reinhard(c, lab_stats(c), reference) for c in (crops, other_lab))
    assert np.abs(a.astype(int) - b).mean() < 4 < np.abs(crops.astype(int) - other_lab).mean()
    mean, sd = lab_stats(a)
    assert np.allclose(mean, reference[0], atol=1.5) and np.allclose(sd, reference[1], atol=1.5)


def test_reinhard_on_the_lightness_alone_keeps_the_colour():
    """``channels="L"``: a slide's brightness and contrast mapped onto the reference, its hue left as it is
    (colour names cell types: granules, cytoplasm)."""
    from leukoscan.classify.stain import lab_stats, reinhard, to_lab

    crops = np.stack([crop(key, i) for i, key in enumerate(CLASSES * 3)])
    dim = (crops.astype(np.float32) * 0.8).astype(np.uint8)  # the same cells under a dimmer lamp
    reference = ([75.0, 40.0, 30.0], [12.0, 14.0, 18.0])  # a colour far from the crops'
    out = reinhard(dim, lab_stats(dim), reference, channels="L")
    mean, sd = lab_stats(out)
    assert abs(mean[0] - reference[0][0]) < 1.5 and abs(sd[0] - reference[1][0]) < 1.5
    assert np.abs(to_lab(out)[..., 1:] - to_lab(dim)[..., 1:]).mean() < 3 < np.abs(mean[1:] - reference[0][1:]).min()


def test_surround_colour_does_not_depend_on_the_cell_in_the_middle():
    """``region="surround"``: a slide's colour from what lies around each white cell (background, red
    cells), so a slide of blue blasts and a slide of pink neutrophils on the same background get the same
    statistics, while the whole-crop statistics tell them apart."""
    from leukoscan.classify.stain import lab_stats, surround_mask

    background = np.full((4, 48, 48, 3), (225, 190, 200), np.uint8)
    disc = ~surround_mask(48, 48, diameter=0.7)
    blasts, neutrophils = background.copy(), background.copy()
    blasts[:, disc], neutrophils[:, disc] = (90, 60, 160), (200, 150, 190)
    assert 0.4 < surround_mask(48, 48).mean() < 0.6
    assert np.allclose(lab_stats(blasts, "surround")[0], lab_stats(neutrophils, "surround")[0], atol=1e-3)
    assert np.abs(lab_stats(blasts)[0] - lab_stats(neutrophils)[0]).max() > 5


def test_stain_transfer_recolours_a_crop_as_another_training_lab_stains():
    """``LabAugment(p_transfer=...)``: a crop of a known lab takes another training lab's colour (its lab's
    Lab mean and SD mapped onto the other's, the SD change bounded by ``transfer_contrast``); a crop of a
    lab without statistics, or with ``p_transfer`` 0, is left to the other augmentations."""
    from leukoscan.classify.augment import LabAugment
    from leukoscan.classify.stain import lab_stats

    crops = np.stack([crop(key, i) for i, key in enumerate(CLASSES * 3)])
    ours = tuple(v.round(3).tolist() for v in lab_stats(crops))
    theirs = ((60.0, 20.0, -10.0), tuple((np.array(ours[1]) * 1.1).tolist()))
    off = dict(hed_sigma=0, hed_bias=0, hue=0, saturation=0, value=0, p_gray=0, p_blur=0, p_resample=0)
    plain = np.stack([LabAugment(**off)(c, np.random.default_rng(0)) for c in crops])  # the HED round trip alone
    aug = LabAugment(p_transfer=1.0, transfer_labs=(("theirs", *theirs),), **off)
    rng = np.random.default_rng(0)
    assert np.array_equal(np.stack([aug(c, rng, "ours_as_well") for c in crops]), plain)  # a lab without statistics
    aug = LabAugment(p_transfer=1.0, transfer_labs=(("ours", *ours), ("theirs", *theirs)), **off)
    moved = [np.stack([aug(c, np.random.default_rng(seed), "ours") for c in crops]) for seed in range(8)]
    means = [lab_stats(m)[0] for m in moved]
    assert any(np.allclose(m, theirs[0], atol=4) for m in means)  # recoloured as the other lab (up to RGB clipping)
    assert any(np.allclose(m, lab_stats(plain)[0], atol=1) for m in means)  # or its own (drawn at random)
    far = LabAugment(p_transfer=1.0, transfer_labs=(("ours", *ours), ("far", theirs[0], (40.0, 40.0, 40.0))), **off)
    sd = [lab_stats(np.stack([far(c, np.random.default_rng(s), "ours") for c in crops]))[1] for s in range(8)]
    assert max(float((v / np.array(ours[1])).max()) for v in sd) < 1.25 * 1.1  # contrast bounded
    none = LabAugment(p_transfer=0.0, transfer_labs=(("ours", *ours), ("theirs", *theirs)), **off)
    assert np.array_equal(np.stack([none(c, rng, "ours") for c in crops]), plain)


def test_zoom_makes_the_cell_larger_or_smaller_in_a_crop_of_the_same_size():
    """``LabAugment(p_zoom=...)``: a slide's cell-size estimate sets the crop window, and it is not exact;
    ``zoom`` shows the same cell as a window ``1 / factor`` as wide would."""
    from leukoscan.classify.augment import LabAugment, zoom

    img = np.full((48, 48, 3), 230, np.uint8)
    cv2.circle(img, (24, 24), 10, (90, 40, 150), -1)

    def radius(rgb):
        return np.sqrt((rgb[..., 0] < 160).sum() / np.pi)

    for factor in (0.77, 1.0, 1.3):
        out = zoom(img, factor)
        assert out.shape == img.shape and abs(radius(out) - 10 * factor) < 1.0
    rng = np.random.default_rng(0)
    off = dict(hed_sigma=0, hed_bias=0, hue=0, saturation=0, value=0, p_gray=0, p_blur=0, p_resample=0)
    radii = [radius(LabAugment(p_zoom=1.0, **off)(img, rng)) for _ in range(40)]
    assert 7.3 < min(radii) < 9 and 11 < max(radii) < 13.5  # up to 1.3x either way
    assert {round(radius(LabAugment(**off)(img, rng)), 1) for _ in range(5)} == {round(radius(img), 1)}  # off


def test_quarter_turns_show_a_crop_in_the_orientations_flips_miss():
    """``LabAugment(p_quarter_turn=...)``: a crop turned a quarter (Ultralytics' flips give the other
    orientations); off, it draws nothing from the random stream, so the shipped recipe's crops are unchanged."""
    from leukoscan.classify.augment import LabAugment

    img = np.full((48, 48, 3), 230, np.uint8)
    cv2.rectangle(img, (10, 20), (40, 28), (90, 40, 150), -1)  # wide, not tall
    off = dict(hed_sigma=0, hed_bias=0, hue=0, saturation=0, value=0, p_gray=0, p_blur=0, p_resample=0)

    def wide(rgb):
        ys, xs = np.nonzero(rgb[..., 0] < 160)
        return np.ptp(xs) > np.ptp(ys)

    plain = LabAugment(**off)(img, np.random.default_rng(0))
    turned = LabAugment(p_quarter_turn=1.0, **off)(img, np.random.default_rng(0))
    assert np.abs(turned.astype(int) - np.rot90(plain)).max() <= 1  # (the HED round trip's rounding)
    assert {wide(LabAugment(p_quarter_turn=0.5, **off)(img, np.random.default_rng(s))) for s in range(20)} == {
        True,
        False,
    }  # some turned, some not
    jitter = dict(p_blur=0.5, p_resample=0.5, p_gray=0.5)
    a, b = np.random.default_rng(3), np.random.default_rng(3)
    assert all(
        np.array_equal(LabAugment(**jitter)(img, a), LabAugment(p_quarter_turn=0.0, **jitter)(img, b)) for _ in range(5)
    )


def test_sharpening_steepens_edges_and_off_draws_nothing():
    """``LabAugment(p_sharpen=...)`` (the trial): an unsharp mask makes a soft edge steeper and keeps flat areas;
    amount 0 is the crop itself; off, it draws nothing, so the shipped recipe's crops are unchanged."""
    from leukoscan.classify.augment import LabAugment, sharpen

    img = np.full((48, 48, 3), 220, np.uint8)
    cv2.circle(img, (24, 24), 10, (90, 40, 150), -1)
    soft = cv2.GaussianBlur(img, (0, 0), 1.5)

    def steepest(rgb):
        return np.abs(np.diff(rgb[24, :, 0].astype(int))).max()

    assert np.array_equal(sharpen(soft, 0.0), soft)
    sharp = sharpen(soft, 1.0)
    assert steepest(sharp) > steepest(soft) and (sharp[:4, :4] == soft[:4, :4]).all()
    off = dict(hed_sigma=0, hed_bias=0, hue=0, saturation=0, value=0, p_gray=0, p_blur=0, p_resample=0)
    plain = LabAugment(**off)(soft, np.random.default_rng(0))
    assert steepest(LabAugment(p_sharpen=1.0, **off)(soft, np.random.default_rng(0))) > steepest(plain)
    jitter = dict(p_blur=0.5, p_resample=0.5, p_gray=0.5)
    a, b = np.random.default_rng(3), np.random.default_rng(3)
    assert all(
        np.array_equal(LabAugment(**jitter)(soft, a), LabAugment(p_sharpen=0.0, **jitter)(soft, b)) for _ in range(5)
    )


def test_contrast_changes_the_lightness_spread_and_keeps_the_colour():
    """``LabAugment(p_contrast=...)`` (the trial): a crop's CIE lightness spread scaled about its mean (another
    lab's contrast), its colour kept; off, it draws nothing, so the shipped recipe's crops are unchanged."""
    from leukoscan.classify.augment import LabAugment, lightness
    from leukoscan.classify.stain import lab_stats

    img = np.full((48, 48, 3), 225, np.uint8)
    cv2.circle(img, (24, 24), 12, (120, 70, 160), -1)  # a violet nucleus on a pale background
    (mean, sd), (mean2, sd2) = lab_stats(img[None]), lab_stats(lightness(img, 1.5, 0.0)[None])
    assert sd2[0] == pytest.approx(1.5 * sd[0], rel=0.05) and mean2[0] == pytest.approx(mean[0], abs=1.0)
    assert np.abs(mean2[1:] - mean[1:]).max() < 3  # a and b (the stain's hue) about the same
    assert lab_stats(lightness(img, 1.0, 5.0)[None])[0][0] == pytest.approx(mean[0] + 5, abs=1.0)
    jitter = dict(p_blur=0.5, p_resample=0.5, p_gray=0.5)
    a, b = np.random.default_rng(3), np.random.default_rng(3)
    assert all(
        np.array_equal(LabAugment(**jitter)(img, a), LabAugment(p_contrast=0.0, **jitter)(img, b)) for _ in range(5)
    )
    off = dict(hed_sigma=0, hed_bias=0, hue=0, saturation=0, value=0, p_gray=0, p_blur=0, p_resample=0)
    spreads = {
        round(lab_stats(LabAugment(p_contrast=1.0, **off)(img, np.random.default_rng(s))[None])[1][0]) for s in range(8)
    }
    assert len(spreads) > 3  # a different contrast each draw


def test_mixstyle_gives_a_crop_another_crops_feature_statistics_in_training_only():
    """MixStyle (``LabAugment(p_mixstyle=...)``, the trial): each feature map keeps its pattern but takes a mix
    of its own channel statistics and another crop's; the hooks act on training batches only, so the saved
    (eval-mode) model computes exactly what it would without them."""
    import torch

    from leukoscan.classify.augment import add_mixstyle, mix_styles
    from leukoscan.runtime import yolo

    torch.manual_seed(0)
    x = torch.randn(2, 3, 6, 6) * torch.tensor([1.0, 3.0]).view(2, 1, 1, 1) + torch.tensor([0.0, 10.0]).view(2, 1, 1, 1)
    for _ in range(5):
        out = mix_styles(x, alpha=0.5)
        assert out.shape == x.shape
        mean, own = out.mean(dim=(2, 3)), x.mean(dim=(2, 3))
        assert ((mean >= own.min(0).values - 1e-4) & (mean <= own.max(0).values + 1e-4)).all()  # between the two
        for a, b in zip(x.flatten(1), out.flatten(1)):  # the pattern within each channel is kept
            assert torch.corrcoef(torch.stack([a, b]))[0, 1] > 0.9
    model = yolo("yolov8n-cls.yaml", "classify").model
    images = torch.rand(4, 3, 64, 64)

    def logits(y):  # in eval mode the classifier head also returns its input
        return y[0] if isinstance(y, tuple) else y

    model.train()
    plain = model(images)
    handles = add_mixstyle(model, p=1.0, alpha=0.1)
    assert not torch.allclose(model(images), plain)
    model.eval()
    hooked = model(images)
    for h in handles:
        h.remove()
    assert torch.equal(logits(hooked), logits(model(images)))


def test_training_crops_name_their_lab():
    from leukoscan.datasets.cells import link_lab

    assert link_lab("zheng_d2_0123.png") == "zheng-d2" and link_lab("taleqani_WBC-Pre-012_03.png") == "taleqani"
    assert link_lab("pbc_LY_123_r7.png") == "pbc" and link_lab("munich_BLA_0001.png") == "munich"


def test_a_model_trained_on_normalised_crops_normalises_each_slide(tiny_model, tmp_path):
    import json
    import shutil

    from leukoscan.classify.predict import CellClassifier
    from leukoscan.classify.stain import SlideColour, lab_stats

    weights = tmp_path / "cells.pt"
    shutil.copyfile(tiny_model, weights)
    crops = np.stack([crop(key, i) for i, key in enumerate(CLASSES)])
    plain = CellClassifier(weights, device="cpu", strict=False)
    assert plain.stain_normalisation is None and plain.normalise(crops, SlideColour((1, 2, 3), (1, 1, 1))) is crops
    reference = {"method": "reinhard-lab", "per": "slide", "mean": [75.0, 10.0, -15.0], "sd": [12.0, 14.0, 18.0]}
    weights.with_suffix(".json").write_text(json.dumps({"stain_normalisation": reference}))
    clf = CellClassifier(weights, device="cpu", strict=False)
    colour = SlideColour.of(crops, n_fields=1)
    assert np.allclose(colour.mean, lab_stats(crops)[0], atol=1e-4) and colour.n_cells == len(crops)
    assert SlideColour.from_record(colour.record()) == colour and SlideColour.from_record(None) is None
    out = clf.normalise(crops, colour)
    assert out.shape == crops.shape and np.allclose(lab_stats(out)[0], reference["mean"], atol=1.5)
    assert clf.normalise(crops, None) is crops  # no slide colour (no cell found): as they are


def test_a_model_trained_on_gray_crops_sees_gray_crops(tiny_model, tmp_path):
    """``input_colour: gray`` on the card: the model sees each crop's luminance only, so two crops that differ
    in stain colour alone get the same probabilities; ``as_input`` leaves RGB crops as they are."""
    import json
    import shutil

    from leukoscan.classify.augment import as_input
    from leukoscan.classify.predict import CellClassifier

    crops = np.stack([crop(key, i) for i, key in enumerate(CLASSES)])
    assert as_input(crops, "rgb") is crops
    gray = as_input(crops, "gray")
    assert gray.shape == crops.shape and (gray[..., 0] == gray[..., 2]).all()
    assert np.abs(gray[..., 0].astype(int) - np.stack([cv2.cvtColor(c, cv2.COLOR_RGB2GRAY) for c in crops])).max() <= 1
    weights = tmp_path / "gray.pt"
    shutil.copyfile(tiny_model, weights)
    weights.with_suffix(".json").write_text(json.dumps({"input_colour": "gray"}))
    clf = CellClassifier(weights, device="cpu", strict=False)
    assert clf.colour == "gray"
    assert np.allclose(clf.raw_probs(crops), clf.raw_probs(gray), atol=1e-6)


def test_a_model_blind_to_pbc_never_sees_pbc_images_through_txl_pbc(tmp_path):
    """TXL-PBC's 360x363 fields are PBC's own images: leaving PBC out leaves them out too (training
    folder and stain targets), and nothing else."""
    import pandas as pd

    from leukoscan.datasets.cells import CELL_COLUMNS, lab_stain_targets, training_folder

    data = tmp_path / "shared"
    for name, size in (("pbc_field", (360, 363)), ("bccd_field", (416, 416))):
        (data / "txl-pbc" / "images" / "train").mkdir(parents=True, exist_ok=True)
        cv2.imwrite(
            str(data / "txl-pbc" / "images" / "train" / f"{name}.jpg"), np.full((*size[::-1], 3), 200, np.uint8)
        )
    cells = tmp_path / "cells"
    (cells / "crops").mkdir(parents=True)
    rows = []
    for i, (source, field) in enumerate(
        [("txl", "pbc_field")] * 30 + [("txl", "bccd_field")] * 30 + [("pbc", "x")] * 30
    ):
        name = f"crops/{source}_{field}_{i}.png"
        cv2.imwrite(str(cells / name), crop("benign", i))
        file = f"txl-pbc/images/train/{field}.jpg" if source == "txl" else "pbc/x.jpg"
        rows.append(
            dict(zip(CELL_COLUMNS, [name, source, source, file, i, "other", "", False, "train", 20.0, "label"]))
        )
    df = pd.DataFrame(rows)
    df.attrs["root"] = cells

    def others(exclude):
        counts = training_folder(df, tmp_path / "folder", exclude, min_per_type=0, data_root=data)
        return counts["train"]["other"]

    assert others(()) == 90 and others(("munich",)) == 90 and others(("pbc",)) == 30
    assert set(lab_stain_targets(df, ("pbc",), data_root=data)) == {"txl-416x416"}
    assert set(lab_stain_targets(df, (), data_root=data)) == {"txl-416x416", "txl-360x363", "pbc"}


def test_calibrate_refuses_a_folder_that_is_not_the_models_and_keeps_its_card(tiny_cell_model, tmp_path):
    """A crop folder of a type the model does not know, a type missing from train/ (its class prior would
    leave it out) or a crop that is not an image: one line, exit 2, the card as it was."""
    import shutil

    from typer.testing import CliRunner

    from leukoscan.pipeline import app

    weights, folder = calibration_folder(tmp_path, tiny_cell_model[2])
    card = weights.with_suffix(".json").read_bytes()
    args = ["classify", "calibrate", "--weights", str(weights), "--data", str(folder), "--device", "cpu"]

    def refused(match: str) -> None:
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 2 and match in result.output and len(result.output.strip().splitlines()) == 1
        assert weights.with_suffix(".json").read_bytes() == card

    (folder / "val" / "unknowntype").mkdir()
    shutil.copyfile(next((folder / "train" / "blast").glob("*.png")), folder / "val" / "unknowntype" / "a.png")
    refused("of no type this model knows (unknowntype)")
    shutil.rmtree(folder / "val" / "unknowntype")
    shutil.move(folder / "train" / "basophil", tmp_path / "basophil")
    refused("no crops of basophil under")
    shutil.move(tmp_path / "basophil", folder / "train" / "basophil")
    (next((folder / "val").iterdir()) / "bad.png").write_text("not an image")
    refused("bad.png")


def test_train_cells_reuse_takes_how_it_was_trained_from_the_runs_card(tmp_path, capsys):
    """`classify train-cells --reuse` finishes a run already trained: its card's recipe and input colour, not the
    command's; a run trained on other crops (colour, sources left out, blasts drawn otherwise) or none at all is one
    line and exit 2."""
    import json

    import typer

    from leukoscan.classify.augment import LabAugment
    from leukoscan.classify.cli import _reused_card
    from leukoscan.classify.train import CellRecipe

    best = tmp_path / "best.pt"
    with pytest.raises(typer.Exit) as stop:
        _reused_card(best, CellRecipe(), "rgb", LabAugment(), [], False, False)
    assert stop.value.exit_code == 2 and "--reuse:" in capsys.readouterr().err
    best.write_bytes(b"weights")
    data = {"excluded": ["pbc"], "blast_parts": True, "equal_blast_sources": False}
    trained = {"recipe": {"epochs": 7}, "input_colour": "rgb", "train_seconds": 12.5, "data": data}
    best.with_suffix(".json").write_text(json.dumps(trained))
    card = _reused_card(best, CellRecipe(epochs=30), "rgb", LabAugment(), ["pbc"], False, True)
    assert card["recipe"] == {"epochs": 7} and card["train_seconds"] == 12.5
    for colour, exclude, equal, parts, says in (
        ("gray", ["pbc"], False, True, "trained on rgb crops"),
        ("rgb", [], False, True, "trained without ['pbc']"),
        ("rgb", ["pbc"], False, False, "trained with --blast-parts"),
        ("rgb", ["pbc"], True, True, "trained without --equal-blast-sources"),
    ):
        with pytest.raises(typer.Exit):
            _reused_card(best, CellRecipe(), colour, LabAugment(), exclude, equal, parts)
        assert says in capsys.readouterr().err
    trained["data"] = {"excluded": ["pbc"]}  # a card from before the flags: trained without them
    best.with_suffix(".json").write_text(json.dumps(trained))
    with pytest.raises(typer.Exit):
        _reused_card(best, CellRecipe(), "rgb", LabAugment(), ["pbc"], False, True)
    assert "trained without --blast-parts" in capsys.readouterr().err


def test_equal_blast_sources_gives_each_source_as_many_training_blasts_and_as_many_in_all(tmp_path):
    """``training_folder(equal_blast_sources=True)``: a larger source's training blasts sampled down and a
    smaller's repeated to their mean, so the blast total stays; val and the other types as without it."""
    import pandas as pd

    from leukoscan.datasets.cells import CELL_COLUMNS, training_folder

    cells = tmp_path / "cells"
    rows = []
    plan = [("taleqani", "blast", "train", 30), ("munich", "blast", "train", 10), ("munich", "blast", "val", 4)]
    plan += [("pbc", "lymphocyte", "train", 6)]
    for source, kind, split, n in plan:
        for i in range(n):
            name = f"crops/{source}/{split}_{i}.png"  # linked as <source>_<name>, as the dataset's
            (cells / name).parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(cells / name), crop("benign", i))
            file = f"{source}/f{i}.jpg"  # one field per crop: Taleqani's blasts-per-field cap leaves them all
            rows.append(dict(zip(CELL_COLUMNS, [name, source, source, file, i, kind, "", False, split, 20.0, ""])))
    df = pd.DataFrame(rows)
    df.attrs["root"] = cells

    def blasts(equal: bool) -> tuple[dict, dict]:
        out = tmp_path / "folder"
        counts = training_folder(df, out, min_per_type=0, equal_blast_sources=equal, data_root=tmp_path)
        names = [p.name.split("_")[0] for p in (out / "train" / "blast").iterdir()]
        return counts, pd.Series(names).value_counts().to_dict()

    counts, by_source = blasts(False)
    assert by_source == {"taleqani": 30, "munich": 10}
    equal, by_source = blasts(True)
    assert by_source == {"taleqani": 20, "munich": 20} and equal["train"]["blast"] == counts["train"]["blast"]
    assert equal["val"] == counts["val"] == {"blast": 4}
    assert equal["train"]["lymphocyte"] == counts["train"]["lymphocyte"] == 6
    only_munich = training_folder(df, tmp_path / "f2", ("taleqani",), min_per_type=0, equal_blast_sources=True)
    assert only_munich["train"]["blast"] == 10  # one source of blasts: nothing to even out
    parts = training_folder(df, tmp_path / "f3", min_per_type=0, blast_parts=True, data_root=tmp_path)
    assert parts["train"] == {"blast~munich": 10, "blast~taleqani": 30, "lymphocyte": 6}  # each source's blasts apart
    assert parts["val"] == {"blast~munich": 4}


def test_a_model_whose_blasts_are_parts_adds_them_up_into_p_blast(tiny_cell_model, tmp_path):
    """A model taught each source's blasts as a class of their own (``blast~a``, ``blast~b``: ``training_folder``'s
    ``blast_parts``) gives the nine cell types, P(blast) the sum of its parts' softmax; its folder counts, class
    prior and validation labels count the parts as blast."""
    import shutil

    from leukoscan.cells import CELL_TYPES
    from leukoscan.classify.augment import LabAugment
    from leukoscan.classify.predict import CellClassifier
    from leukoscan.classify.train import CellRecipe, folder_counts, folder_crops, scores_card, train_cells

    root = tmp_path / "crops"
    shutil.copytree(tiny_cell_model[2], root, ignore=shutil.ignore_patterns("runs"))
    for split in ("train", "val"):
        blasts = sorted((root / split / "blast").iterdir())
        for part, files in (("blast~a", blasts[::2]), ("blast~b", blasts[1::2])):
            (root / split / part).mkdir()
            for f in files:
                shutil.move(f, root / split / part / f.name)
        (root / split / "blast").rmdir()
    counts = folder_counts(root / "train")
    assert counts["blast"] == 9 and not any("~" in k for k in counts)
    assert scores_card({"blast~a": 5, "blast~b": 4, "lymphocyte": 9}, 1, 2.0)["prior_correction"]["class_prior"] == {
        "blast": 0.5,
        "lymphocyte": 0.5,
    }
    crops, labels, _ = folder_crops(root / "val", CELL_TYPES)
    assert (labels == CELL_TYPES.index("blast")).sum() == 2
    best, _ = train_cells(
        root,
        tmp_path / "runs",
        "parts",
        CellRecipe(imgsz=32, epochs=1, batch=16, workers=0),
        "cpu",
        "rgb",
        LabAugment(),
    )
    clf = CellClassifier(best, device="cpu")
    assert set(clf.model.names.values()) == {"blast~a", "blast~b", *CELL_TYPES} - {"blast"}
    probs = clf.softmax(crops)
    raw = np.concatenate(  # the model's own outputs, on the input the classifier gives it
        [
            np.stack([r.probs.data.cpu().numpy() for r in clf.model.predict(x, imgsz=clf.imgsz, verbose=False)])
            for _, x in clf.batches(crops)
        ]
    )
    parts = [i for i, n in clf.model.names.items() if n.startswith("blast~")]
    assert probs.shape == (len(crops), len(CELL_TYPES)) and np.allclose(probs.sum(axis=1), 1, atol=1e-5)
    assert np.allclose(probs[:, CELL_TYPES.index("blast")], raw[:, parts].sum(axis=1), atol=1e-5)
    for i, name in clf.model.names.items():  # every other type is its own class's output, wherever that sits
        if i not in parts:
            assert np.allclose(probs[:, CELL_TYPES.index(name)], raw[:, i], atol=1e-5)


def test_white_balance_tints_every_pixel_alike_and_draws_nothing_when_off():
    """``LabAugment(p_white_balance=...)``: another lamp's colour cast, one gain per RGB channel (their geometric
    mean 1: a tint, not a brightness change) within ``white_balance`` either way, the same for every pixel; off,
    nothing is drawn, so the shipped recipe's crops are unchanged."""
    from leukoscan.classify.augment import LabAugment, cast_gains, white_balance

    img = np.full((48, 48, 3), 180, np.uint8)
    cv2.circle(img, (24, 24), 10, (120, 60, 150), -1)
    yellow = white_balance(img, (1.0, 1.0, 0.5))
    assert np.array_equal(yellow[..., :2], img[..., :2]) and set(np.unique(yellow[..., 2])) == {75, 90}
    assert white_balance(img, (2.0, 1.0, 1.0))[..., 0].max() == 255  # clipped, not wrapped
    rng = np.random.default_rng(0)
    gains = np.array([cast_gains(rng, 1.3) for _ in range(200)])
    assert np.allclose(np.log(gains).sum(1), 0) and gains.min() >= 1 / 1.3**2 and gains.max() <= 1.3**2
    assert gains.min() < 0.85 and gains.max() > 1.15  # casts of every direction and size
    off = dict(hed_sigma=0, hed_bias=0, hue=0, saturation=0, value=0, p_gray=0, p_blur=0, p_resample=0)
    plain = LabAugment(**off)(img, np.random.default_rng(0))
    assert not np.array_equal(LabAugment(p_white_balance=1.0, **off)(img, np.random.default_rng(0)), plain)
    jitter = dict(p_blur=0.5, p_resample=0.5, p_gray=0.5)
    a, b = np.random.default_rng(3), np.random.default_rng(3)
    assert all(
        np.array_equal(LabAugment(**jitter)(img, a), LabAugment(p_white_balance=0.0, **jitter)(img, b))
        for _ in range(5)
    )


def test_weight_averaging_means_the_last_epochs_and_measures_batch_norm_again(tiny_cell_model):
    """``train-cells --average-last``: the last k epochs' weights and batch norm's statistics averaged (float
    tensors; step counts from the last), or the statistics measured afresh on training crops
    (``--remeasure-batchnorm``); too few epochs kept, or none kept by the run about to be trained: one line."""
    import torch
    from torch.optim.swa_utils import update_bn

    from leukoscan.classify.augment import LabAugment
    from leukoscan.classify.average import average_run, average_state, epoch_checkpoints

    a = {"w": torch.tensor([1.0, 3.0]), "n": torch.tensor(4)}
    b = {"w": torch.tensor([3.0, 5.0]), "n": torch.tensor(9)}
    mean = average_state([a, b])
    assert mean["w"].tolist() == [2.0, 4.0] and int(mean["n"]) == 9

    norm = torch.nn.Sequential(torch.nn.BatchNorm2d(3)).eval()
    x = torch.rand(8, 3, 4, 4) * 2 + 5
    update_bn([x[:4], x[4:]], norm)  # the rule --remeasure-batchnorm relies on
    assert torch.allclose(norm[0].running_mean, x.mean(dim=(0, 2, 3)), atol=1e-5)
    assert norm[0].momentum == 0.1 and not norm.training

    _, _, root = tiny_cell_model
    run = root / "runs" / "smoke"
    epochs = epoch_checkpoints(run, 2)
    assert [f.name for f in epochs] == ["epoch0.pt", "epoch1.pt"]
    with pytest.raises(ValueError, match="kept 2 epochs' weights, fewer than the 3"):
        epoch_checkpoints(run, 3)
    states = [torch.load(f, map_location="cpu", weights_only=False)["ema"].float().state_dict() for f in epochs]
    out = torch.load(average_run(run, 2), map_location="cpu", weights_only=False)
    assert out["averaged_epochs"] == 2 and out["optimizer"] is None
    averaged = out["ema"].float().state_dict()
    conv = next(k for k in averaged if k.endswith("conv.weight"))
    bn = next(k for k in averaged if k.endswith("running_mean"))
    for key in (conv, bn):  # batch norm's statistics averaged with the weights, as Ultralytics' EMA does
        assert torch.allclose(averaged[key], (states[0][key] + states[1][key]) / 2, atol=2e-3)
    remeasured = torch.load(average_run(run, 2, root, LabAugment(), 32), map_location="cpu", weights_only=False)
    remeasured = remeasured["ema"].float().state_dict()
    assert torch.allclose(remeasured[conv], averaged[conv]) and not torch.allclose(
        remeasured[bn], averaged[bn], atol=1e-3
    )
    last = torch.load(average_run(run, 1), map_location="cpu", weights_only=False)
    assert torch.equal(last["ema"].float().state_dict()[bn], states[1][bn])

    from typer.testing import CliRunner

    from leukoscan.pipeline import app

    refused = CliRunner().invoke(app, ["classify", "train-cells", "--cells", str(root), "--average-last", "5"])
    assert refused.exit_code == 2 and "give --save-period 1" in refused.output  # before training, not after
    alone = CliRunner().invoke(app, ["classify", "train-cells", "--cells", str(root), "--remeasure-batchnorm"])
    assert alone.exit_code == 2 and "part of --average-last" in alone.output


def test_train_cells_refuses_a_second_training_of_the_same_name_and_a_model_that_is_not_a_classifier(
    tmp_path, lock_holder
):
    """Two `train-cells` of one --name at once would rebuild and train on the same crop folder: the second is one
    line naming the first's process and exit 2, before it reads or writes anything; so is a --model that is not
    a classification yaml."""
    from typer.testing import CliRunner

    from leukoscan.pipeline import app

    cells = tmp_path / "cells"
    lock = cells / "runs" / ".no-pbc.lock"
    lock.parent.mkdir(parents=True)
    holder = lock_holder(lock)
    train = ["classify", "train-cells", "--cells", str(cells), "--exclude", "pbc"]
    busy = CliRunner().invoke(app, train)
    holder.kill()
    holder.wait()
    assert busy.exit_code == 2 and busy.output.strip().splitlines()[-1] == (
        f"error: another train-cells (pid {holder.pid}) is training on {cells / 'runs' / 'no-pbc'} now: wait for it, "
        "or give this one another --name"
    )
    assert sorted(p.name for p in (cells / "runs").iterdir()) == [".no-pbc.lock"]  # its crop folder untouched
    for model, says in (
        ("yolov8n.yaml", "not a classification model"),
        ("nothere-cls.yaml", "no such model yaml"),
        ("weights.pt", "not weights"),
    ):
        refused = CliRunner().invoke(app, [*train, "--model", model])
        assert refused.exit_code == 2 and says in refused.output.strip().splitlines()[-1]
    freed = CliRunner().invoke(app, train)  # the lock is free again: on to the table, which is not there
    assert freed.exit_code == 2 and "cells.csv" in freed.output and "another train-cells" not in freed.output
