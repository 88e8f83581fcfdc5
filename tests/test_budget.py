"""The paper's budget (`analysis.budget`): pass counts from the profile, bounds from per-pass costs."""
from causadv_lib import attacks, config
from causadv_lib.analysis import budget


def test_steps_follow_the_attack_settings():
    assert budget.steps("fgsm") == 1
    for a in ("bim", "pgd"):
        s = attacks.SETTINGS[a]
        assert budget.steps(a) == s["max_iter"] * max(1, s["num_random_init"])


def test_bounds_add_passes_kernel_and_one_load_per_model():
    work = [budget.Item("02_x", "m1", "forward", 10, "a"), budget.Item("02_x", "m1", "ci", 4, "b"),
            budget.Item("02_x", "m2", "forward", 2, "c"), budget.Item("03_y", "m1", "decode", 5, "d")]
    units = {("m1", "forward"): 0.5, ("m1", "ci"): 1.0, ("m2", "forward"): 2.0, ("m1", "decode"): 0.1}
    got = budget.bounds(work, units, {"kernel": 3.0}, {"m1": 7.0, "m2": 11.0})
    assert got == {"02_x": 10 * 0.5 + 4 * 1.0 + 2 * 2.0 + 3.0 + 7.0 + 11.0, "03_y": 5 * 0.1 + 3.0 + 7.0}
    assert budget.by_kind(work + work) == {("02_x", "m1", "forward"): 20, ("02_x", "m1", "ci"): 8,
                                           ("02_x", "m2", "forward"): 4, ("03_y", "m1", "decode"): 10}


def test_own_model_counts_the_attacks_on_the_correct_images_only():
    S = config.OWN_MODEL_SCALE["smoke"]
    none = budget._own_model("smoke", None)
    some = budget._own_model("smoke", {"a": 3, "b": 5})
    grad = lambda items, m: sum(i.count for i in items if i.kind == "gradient" and i.model == m)  # noqa: E731
    per_image = sum(budget.steps(a) for a in config.OWN_MODEL_ATTACKS)
    assert grad(none, budget.NB09_MODEL) == grad(none, budget.NB09_B) == 0
    assert grad(some, budget.NB09_MODEL) == 3 * per_image and grad(some, budget.NB09_B) == 5 * per_image
    ci_b = sum(i.count for i in some if i.kind == "ci" and i.model == budget.NB09_B)
    assert ci_b == S["train"] + S["cifar_eval"] + 5 * len(config.OWN_MODEL_ATTACKS)
    assert all(i.notebook == "09_your_own_model" and i.count > 0 for i in some)
