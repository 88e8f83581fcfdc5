"""The fixed-batch forward pass: every compiled call sees MICRO_BATCH rows, so a result never depends on
the batch size or on which images share a call, and the padding rows never reach a result."""
import numpy as np
import pytest

keras = pytest.importorskip("keras")
from keras import layers as L  # noqa: E402

from causadv_lib import heatmaps, runner  # noqa: E402


def _model(end="softmax"):
    keras.utils.set_random_seed(5)
    i = keras.Input((6, 6, 3))
    x = L.Conv2D(7, 3, padding="same", activation="relu", name="act")(i)
    x = L.BatchNormalization(name="bn")(x)
    z = L.Dense(4, name="logits")(L.GlobalAveragePooling2D()(x))
    out = {"softmax": L.Softmax(name="probs"), "lambda": L.Activation(lambda t: keras.ops.softmax(t)),
           "logits": L.Identity()}[end](z)
    return keras.Model(i, out, name=f"runner_{end}")


def _x(n, seed=0):
    return np.random.default_rng(seed).normal(size=(n, 6, 6, 3)).astype(np.float32)


def test_fixed_batches_calls_fixed_shapes_pads_with_the_last_row_and_cuts_back():
    seen = []

    def f(a, b):
        seen.append((a.numpy().copy(), b.numpy().copy()))
        return a * 2, b + 1
    a = np.arange(11, dtype=np.float32).reshape(11, 1)
    b = np.arange(11, dtype=np.int32)
    out = runner.fixed_batches(f, [a, b], 4)
    assert [s[0].shape for s in seen] == [(4, 1)] * 3                 # every call: exactly 4 rows
    np.testing.assert_array_equal(seen[-1][0][:, 0], [8, 9, 10, 10])  # padded by repeating the last row
    np.testing.assert_array_equal(seen[-1][1], [8, 9, 10, 10])
    np.testing.assert_array_equal(out[0], a * 2)                      # the padding never comes back
    np.testing.assert_array_equal(out[1], b + 1)
    assert runner.fixed_batches(f, [a[:0], b[:0]], 4) == []
    np.testing.assert_array_equal(runner.pad(a[:3], 5)[:, 0], [0, 1, 2, 2, 2])
    assert runner.round_up(17, 16) == 32 and runner.round_up(16, 16) == 16 and runner.round_up(1, 4) == 4


@pytest.mark.parametrize("end", ["softmax", "lambda", "logits"])
def test_results_are_bit_identical_whatever_the_batch_size_and_company(end):
    model, outputs = _model(end), "logits" if end == "logits" else "probabilities"
    x = _x(37)
    ref_p = runner.probabilities(model, x, outputs=outputs, batch_size=1)
    ref_wp, ref_z = runner.with_logits(model, x, outputs=outputs, batch_size=1)
    assert ref_p.shape == (37, 4) and ref_p.dtype == np.float32
    assert (ref_z is None) == (end == "lambda")
    perm = np.random.default_rng(1).permutation(37)
    for bs in (3, 16, 17, 64):
        for order in (np.arange(37), perm):
            back = np.argsort(order)
            np.testing.assert_array_equal(
                runner.probabilities(model, x[order], outputs=outputs, batch_size=bs)[back], ref_p)
            p, z = runner.with_logits(model, x[order], outputs=outputs, batch_size=bs)
            np.testing.assert_array_equal(p[back], ref_wp)
            if ref_z is not None:
                np.testing.assert_array_equal(z[back], ref_z)
    # one image alone (15 padding rows) or among others: the same bits
    np.testing.assert_array_equal(runner.probabilities(model, x[5:6], outputs=outputs)[0], ref_p[5])
    np.testing.assert_allclose(ref_p.sum(axis=1), 1.0, rtol=1e-5)


def test_padding_never_leaks_into_a_result():
    """A short batch is padded with copies of its last image: the same real rows whatever follows them."""
    model = _model()
    x = _x(20, seed=2)
    short = runner.with_logits(model, x[:3])
    crowd = runner.with_logits(model, np.concatenate([x[:3], x[3:16]]))    # real images where the padding was
    for s, c in zip(short, crowd):
        assert len(s) == 3
        np.testing.assert_array_equal(s, c[:3])
    acts = runner.activations(model, x[:3], "act")
    assert acts.shape == (3, 6, 6, 7)
    np.testing.assert_array_equal(acts, runner.activations(model, x, "act")[:3])
    np.testing.assert_allclose(acts, keras.Model(model.inputs[0], model.get_layer("act").output)(x[:3]),
                               rtol=1e-5, atol=1e-6)


def test_heatmaps_share_the_layout_and_bad_calls_are_refused():
    assert heatmaps.BATCH == runner.MICRO_BATCH == 16
    model = _model()
    with pytest.raises(ValueError, match="no images"):
        runner.probabilities(model, _x(0))
    for bad in (0, -1, 2.0, True):
        with pytest.raises(ValueError, match=r"batch_size=.*positive integer"):
            runner.with_logits(model, _x(2), batch_size=bad)
