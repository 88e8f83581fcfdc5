"""experiment: naming, setups, the successful-example filter, the paper-layout rows, and one end-to-end
run on a tiny CNN (no zoo weights, a few seconds)."""
import math
from types import SimpleNamespace

import numpy as np
import pytest

from causadv_lib import cache, ci, config, experiment, paper, strategies, vocab
from causadv_lib.analysis import tables
from causadv_lib.vocab import CLEAN, AttackKey


# ------------------------------------------------------------------------------------------- naming
@pytest.mark.parametrize("eps, label", [(8 / 255, "8/255"), (24 / 255, "24/255"), (1.0, "255/255"), (0.01, "0.01")])
def test_eps_label(eps, label):
    assert vocab.eps_label(eps) == label


def test_attack_key_labels_and_validation():
    k = AttackKey("pgd", True, 8 / 255)
    assert (k.label, k.variant, k.eps_label, k.full_label) == (
        "PGD targeted", "targeted", "8/255", "PGD targeted, eps 8/255")
    assert AttackKey("fgsm", 0, 8 / 255).label == "FGSM untargeted"
    assert AttackKey("bim", np.bool_(True), np.float32(8 / 255)).targeted is True
    assert hash(AttackKey("bim", True, 8 / 255)) == hash(AttackKey("bim", True, 8 / 255))
    with pytest.raises(ValueError, match="unknown attack"):
        AttackKey("cw", False, 8 / 255)


def test_setups_default_models_budgets_and_table_order():
    imagenet, cifar = experiment.setups("smoke")
    assert (imagenet.dataset, imagenet.model, imagenet.eval_pool, imagenet.prototype_pool) == (
        "imagenet", "mobilenet_v2_imagenet", "imagenet_eval", "imagenet_prototypes")
    assert (cifar.dataset, cifar.model, cifar.eval_pool, cifar.prototype_pool) == (
        "cifar10", "vgg16_bn_cifar10", "cifar10_eval", "cifar10_prototypes")
    assert imagenet.eps == (8 / 255,) and cifar.eps == (24 / 255, 8 / 255)
    assert cifar.paper_eps == 24 / 255
    labels = [k.label for k in cifar.keys(24 / 255)]
    assert labels == ["FGSM targeted", "PGD targeted", "BIM targeted",
                      "FGSM untargeted", "PGD untargeted", "BIM untargeted"]
    assert len(cifar.keys()) == 12 and [k.eps for k in cifar.keys()][::6] == [24 / 255, 8 / 255]


def test_setup_other_models_and_their_samples():
    """A model with a committed list uses it; one without (vgg16_imagenet) has its own derived sample."""
    imagenet, cifar = experiment.setups("paper", imagenet_model="vgg16_imagenet", cifar_model="resnet56_cifar10")
    assert imagenet.model == imagenet.sample_model == "vgg16_imagenet" and not imagenet.committed_samples
    assert cifar.model == cifar.sample_model == "resnet56_cifar10" and cifar.committed_samples
    only = experiment.setups("smoke", dataset="cifar10", model="resnet20_cifar10")
    assert [(s.dataset, s.model, s.committed_samples) for s in only] == [("cifar10", "resnet20_cifar10", False)]
    with pytest.raises(ValueError, match="say which dataset"):
        experiment.setups("smoke", model="resnet20_cifar10")
    with pytest.raises(ValueError, match="unknown dataset"):
        experiment.setup_for("mnist", "smoke")
    with pytest.raises(ValueError, match="unknown profile"):
        experiment.setups("huge")


def test_adversarial_refuses_a_budget_outside_the_setup():
    imagenet, _ = experiment.setups("smoke")
    with pytest.raises(ValueError, match="not one of the setup's budgets"):
        experiment.adversarial(imagenet, AttackKey("pgd", False, 4 / 255))


def test_timing_rows_sum_by_stage(monkeypatch):
    monkeypatch.setattr(experiment, "TIMINGS", [
        {"dataset": "cifar10", "model": "m", "stage": "attack", "item": "a", "seconds": 1.04},
        {"dataset": "cifar10", "model": "m", "stage": "attack", "item": "b", "seconds": 2.0},
        {"dataset": "cifar10", "model": "m", "stage": "ci", "item": "a", "seconds": 0.5}])
    rows = experiment.timing_rows()
    assert rows == [{"dataset": "cifar10", "model": "m", "stage": "attack", "items": 2, "seconds": 3.0},
                    {"dataset": "cifar10", "model": "m", "stage": "ci", "items": 1, "seconds": 0.5}]


# ---------------------------------------------------------------------------------- the sets, faked
def _fake_adversarial(success, attack_pred, ci_pred):
    setup = experiment.setups("smoke")[1]
    result = SimpleNamespace(success=np.array(success), predicted=np.array(attack_pred))
    ci = SimpleNamespace(predicted=np.array(ci_pred))  # the CI pass
    return experiment.AdversarialSet(setup, AttackKey("fgsm", False, 24 / 255), result, ci,
                                     source=np.arange(len(success)))


def test_success_needs_attack_success_and_the_same_prediction_in_the_ci_pass():
    adv = _fake_adversarial([True, True, False, True], [3, 4, 0, 5], [3, 7, 0, 5])
    assert adv.success.tolist() == [True, False, False, True]
    assert (adv.n_attacked, adv.n_success) == (4, 2)
    assert adv.success_rate == 0.5
    empty = _fake_adversarial([], [], [])
    assert math.isnan(empty.success_rate) and empty.n_success == 0


def test_clean_correct_compares_the_ci_prediction_with_the_label():
    setup = experiment.setups("smoke")[1]
    cs = experiment.CleanSet(setup, ("a", "b", "c"), np.array([1, 2, 3]), np.zeros((3, 2, 2, 3), np.float32),
                             SimpleNamespace(predicted=np.array([1, 0, 3])))
    assert cs.correct.tolist() == [True, False, True] and cs.n_correct == 2 and cs.n == 3


def _synthetic_experiment(dataset="cifar10", seed=0):
    """An Experiment built from arrays: 12 clean samples (2 wrong), six attacks at each budget."""
    rng = np.random.default_rng(seed)
    setup = experiment.setup_for(dataset, "smoke")
    C, K, N = 10, 16, 12
    proto_ci = rng.normal(size=(C, K)).astype(np.float32)
    proto_ci[9] = np.nan                                      # class 9 has no prototype
    protos = SimpleNamespace(ci=proto_ci)
    labels = np.arange(N) % C
    pred = labels.copy()
    pred[[0, 1]] = [5, 6]                                     # two misclassified images
    clean_ci = (proto_ci[np.minimum(pred, 8)] + 0.1 * rng.normal(size=(N, K))).astype(np.float32)
    cs = experiment.CleanSet(setup, tuple(map(str, range(N))), labels, np.zeros((N, 2, 2, 3), np.float32),
                             SimpleNamespace(ci=clean_ci, predicted=pred))
    exp = experiment.Experiment(setup, cs, protos)
    source = np.flatnonzero(cs.correct)
    for i, key in enumerate(setup.keys()):
        adv_pred = (labels[source] + 1 + i) % C
        adv_ci = rng.normal(size=(len(source), K)).astype(np.float32)
        adv_ci[:, :4] = 0.0                                   # a few exact zeros
        ok = np.arange(len(source)) % 3 != 0                  # every third attack fails
        res = SimpleNamespace(success=ok, predicted=adv_pred, adversarial=cs.pixels[source] + 2.0)
        exp.adversarial[key] = experiment.AdversarialSet(setup, key, res, SimpleNamespace(ci=adv_ci, predicted=adv_pred),
                                                         source)
    return exp


def test_strategy_results_count_correct_clean_and_successful_adversarial_only():
    exp = _synthetic_experiment()
    res = tables.strategy_results(exp, 24 / 255)
    assert list(res)[0] == CLEAN and len(res) == 7
    assert res[CLEAN]["S1(n=0)"].n == 10           # 12 images, 2 misclassified
    key = AttackKey("pgd", True, 24 / 255)
    assert res[key]["S3(n=5)"].n == exp.adversarial[key].n_success
    # both Pearson modes exist on both datasets
    assert {"S2(top-5)", "S2(rho>=0.5)"} <= set(res[key])
    adv = exp.adversarial[key]
    direct = strategies.s3_zero_effect(adv.ci_result.ci[adv.success], n=5)
    assert strategies.paper_count(res[key]["S3(n=5)"]) == strategies.paper_count(direct)


def test_paper_rows_layout_and_paper_columns():
    exp = _synthetic_experiment()
    table = paper.table_for("table3", exp.setup.dataset, 24 / 255)
    rows = tables.paper_rows(exp, ["S3(n=5)", "S3(n=10)"], 24 / 255, table=table)
    assert [r["samples"] for r in rows] == ["Clean", "FGSM targeted", "PGD targeted", "BIM targeted",
                                           "FGSM untargeted", "PGD untargeted", "BIM untargeted"]
    assert rows[0]["paper N"] == 100 and rows[0]["paper S3(n=5)"] == 65 and rows[0]["paper S3(n=10)"] == 36
    assert rows[6]["paper S3(n=5)"] == 1 and rows[0]["eps"] == "24/255" and rows[0]["dataset"] == "CIFAR-10"
    assert all(r["S3(n=5)"].endswith(f"/{r['N']}") for r in rows)
    assert paper.table_for("table3", exp.setup.dataset, 8 / 255) is None
    # samples predicted as class 9 (no prototype) are reported as uncounted for S2
    rows = tables.paper_rows(exp, ["S2(rho>=0.5)"], 24 / 255)
    assert any("uncounted" in r["S2(rho>=0.5)"] for r in rows)
    assert "paper N" not in rows[0]


def test_detection_rows_cover_every_score_attack_and_budget():
    exp = _synthetic_experiment()
    rows = tables.detection_rows(exp)
    assert len(rows) == len(vocab.ROC_VARIANTS) * 12
    r = next(r for r in rows if r["strategy"] == "S3(n=5)" and r["attack"] == "BIM untargeted" and r["eps"] == "8/255")
    adv = exp.adversarial[AttackKey("bim", False, 8 / 255)]
    assert r["n_adv"] == adv.n_success and r["n_clean"] == 10
    # every adversarial sample has >= 4 exact zeros, the clean ones none: -#zeros is lower for adversarial
    assert r["auc"] == 0.0
    assert {r["score"] for r in rows} == set(vocab.SCORE_NAMES.values())


def test_success_rows():
    exp = _synthetic_experiment()
    rows = tables.success_rows(exp)
    assert len(rows) == 12 and rows[0]["attack"] == "FGSM targeted" and rows[0]["eps"] == "24/255"
    assert rows[0]["max |delta| (grey levels)"] == 2.0
    assert rows[0]["attacked"] == 10 and rows[0]["successful"] == exp.adversarial[AttackKey("fgsm", True, 24 / 255)].n_success


# --------------------------------------------------------------------------- end to end, tiny model
@pytest.mark.parametrize("library_norm", [False, True])
def test_run_end_to_end_on_a_tiny_cnn(tmp_path, monkeypatch, library_norm):
    """The whole experiment on a tiny CNN; with a normalisation of the library (`library_norm`), the CI of each
    attack is keyed by its attack's cache entry and its pixels are read only to compute it: the CI vectors are
    those of the pixels, and a new process state serves them without reading the pixels."""
    import keras

    from causadv_lib import data, preprocess, samples, zoo

    monkeypatch.setenv(config.CACHE_ENV, str(tmp_path))
    monkeypatch.setitem(config.ATTACK_EPS, "cifar10", (24 / 255,))
    keras.utils.set_random_seed(0)
    inp = keras.Input((32, 32, 3))
    h = keras.layers.Conv2D(8, 3, activation="relu", name="conv")(inp)
    h = keras.layers.GlobalAveragePooling2D()(h)
    out = keras.layers.Dense(10, activation="softmax")(h)
    norm = lambda x: (np.asarray(x, np.float32) / 255.0).astype(np.float32)  # noqa: E731
    if library_norm:
        norm = preprocess.normalize_vgg16_bn_cifar10
    zm = zoo.custom(keras.Model(inp, out), norm, normalize=norm, name="tiny", dataset="cifar10")

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(40, 32, 32, 3), dtype=np.uint8)
    predicted = zm.predict(images).argmax(axis=1)
    ids = tuple(f"img{i}" for i in range(40))
    labels = predicted.copy()
    labels[1] = (labels[1] + 1) % 10                          # one misclassified evaluation image
    sources = tuple(f"sha256:{cache.key(im)}" for im in images) if library_norm else None   # files known by hash
    pool = data.ImagePool("tiny_pool", ids, labels, data.CIFAR10_CLASSES, lambda idx: images[idx], sources)
    monkeypatch.setattr(data, "pool", lambda name: pool)
    monkeypatch.setattr(samples, "for_profile", lambda model, pool_name, profile: samples.SampleList(
        model, pool_name, ids[:6], tuple(int(y) for y in labels[:6])))
    monkeypatch.setitem(samples.PAPER_LISTS, ("tiny", "tiny_pool"), samples.POOL_SCALE["cifar10_eval"])  # "committed"
    monkeypatch.setattr(experiment, "_zoo", lambda setup: zm)
    setup = experiment.Setup("cifar10", "tiny", "smoke", "tiny_pool", "tiny_pool", (24 / 255,), "tiny")
    experiment.clear_memo()
    try:
        exp = experiment.run(setup, progress=False)
        assert exp.clean.n == 6 and exp.clean.correct.tolist() == [True, False, True, True, True, True]
        assert set(exp.adversarial) == set(setup.keys()) and len(exp.adversarial) == 6
        for key, adv in exp.adversarial.items():
            assert adv.source.tolist() == [0, 2, 3, 4, 5]
            assert 0 < adv.max_perturbation(exp.clean) <= 24 + 1e-3
            assert adv.attack_result.adversarial.dtype == np.float32
            want = adv.attack_result.predicted != exp.clean.labels[adv.source] if not key.targeted else (
                adv.attack_result.predicted == adv.attack_result.targets)
            assert np.array_equal(adv.success, want & (adv.ci_result.predicted == adv.attack_result.predicted))
        # memo: the same objects; timings recorded once per computation
        assert experiment.adversarial(setup, setup.keys()[0]) is exp.adversarial[setup.keys()[0]]
        stages = {r["stage"] for r in experiment.TIMINGS}
        assert {"attack", "ci", "prototypes"} <= stages
        n_timed = len(experiment.TIMINGS)
        experiment.run(setup, progress=False)
        assert len(experiment.TIMINGS) == n_timed
        # disk cache: a fresh process state reads the same adversarial pixels back
        first = exp.adversarial[setup.keys()[1]].attack_result.adversarial
        experiment.clear_memo()
        again = experiment.adversarial(setup, setup.keys()[1])
        assert np.array_equal(again.attack_result.adversarial, first)
        assert any((tmp_path / "attacks").iterdir()) and any((tmp_path / "ci").iterdir())
        assert tables.strategy_results(experiment.run(setup, progress=False))
        for key, adv in exp.adversarial.items():           # CI of each attack: that of its pixels, bit for bit
            res = adv.attack_result
            assert res.entry == (cache.path("attacks", res.entry).stem)
            direct = ci.counterfactual_information(zm.model, norm(res.adversarial), zm.ci_layer)
            assert np.array_equal(adv.ci_result.ci, direct.ci) and np.array_equal(adv.ci_result.predicted,
                                                                                  direct.predicted)
            assert experiment.first(adv, 2).attack_result.entry == ""
        experiment.clear_memo()
        real, kinds, made = ci.counterfactual_information, [], []
        monkeypatch.setattr(ci, "counterfactual_information",
                            lambda model, images, *a, **kw: kinds.append(type(images).__name__) or real(model, images,
                                                                                                     *a, **kw))
        monkeypatch.setattr(ci.checks, "keyed_images", lambda *a: made.append(1))   # would fail if called
        experiment.run(setup, progress=False)
        assert kinds == ["KeyedInputs" if library_norm else "ndarray"] * 7    # clean, then attacks
        assert not made                                    # served from the cache: no pixels made
        if library_norm:                                   # the clean pixels: decoded once, then read from the cache
            cs = experiment.clean(setup)
            assert cs.pixels_digest == cache.key(images[:6].astype(np.float32)) and not cs.pixels.flags.writeable
            assert np.array_equal(cs.pixels, images[:6].astype(np.float32))
    finally:
        experiment.clear_memo()


def test_paper_command_names_the_model_the_dataset_and_a_folder_of_its_own():
    assert experiment.paper_command("resnet20_cifar10", "cifar10") == \
        "make paper MODEL=resnet20_cifar10 DATASET=cifar10 OUT=runs/resnet20_cifar10"
    assert experiment.paper_command("m/my_cnn.keras", "cifar10", normalize="[0,1]", profile="smoke") == \
        "make paper PROFILE=smoke MODEL=m/my_cnn.keras DATASET=cifar10 NORMALIZE=[0,1] OUT=runs/my_cnn/smoke"
    with pytest.raises(ValueError, match="unknown dataset"):
        experiment.paper_command("x", "mnist")
