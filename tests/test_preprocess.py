"""Input conventions: shapes, values and the errors for malformed images."""
import keras
import numpy as np
import pytest

from causadv_lib import preprocess as pp

RNG = np.random.default_rng(0)


def _u8(*shape):
    return RNG.integers(0, 256, size=shape, dtype=np.uint8)


# ------------------------------------------------------------------------------------ errors
def test_cifar_wrong_size_names_model_and_sizes():
    with pytest.raises(ValueError, match=r"vgg16_bn_cifar10.*32x32.*got 64x48"):
        pp.preprocess_vgg16_bn_cifar10(_u8(2, 64, 48, 3))
    with pytest.raises(ValueError, match=r"resnet_cifar10.*32x32.*got 31x32 \(image 1\)"):
        pp.preprocess_resnet_cifar10([_u8(32, 32, 3), _u8(31, 32, 3)])


@pytest.mark.parametrize("fn", [pp.preprocess_vgg16_bn_cifar10, pp.preprocess_resnet_cifar10,
                                pp.preprocess_mobilenet_v2, pp.preprocess_vgg16_imagenet])
def test_malformed_images_are_refused(fn):
    with pytest.raises(ValueError, match=r"\(H, W, 3\).*got shape \(32, 32, 1\).*grayscale"):
        fn(_u8(2, 32, 32, 1))  # one channel
    with pytest.raises(ValueError, match=r"\(H, W, 3\).*grayscale"):
        fn([_u8(32, 32)])  # a 2-D grayscale image in a list
    with pytest.raises(ValueError, match=r"\(H, W, 3\).*\(32, 32, 4\)"):
        fn(_u8(1, 32, 32, 4))  # RGBA
    with pytest.raises(ValueError, match=r"uint8.*float32"):
        fn(np.zeros((1, 32, 32, 3), np.float32))
    with pytest.raises(ValueError, match=r"\(N, H, W, 3\).*shape \(32, 32, 3\)"):
        fn(_u8(32, 32, 3))  # one image without the batch axis
    with pytest.raises(ValueError, match=r"uint8 array.*got str"):
        fn("image.png")


def test_normalize_checks_shape():
    with pytest.raises(ValueError, match=r"\(N, 224, 224, 3\)"):
        pp.normalize_mobilenet_v2(np.zeros((1, 32, 32, 3)))
    with pytest.raises(ValueError, match=r"\(N, 32, 32, 3\)"):
        pp.normalize_resnet_cifar10(np.zeros((32, 32, 3)))


NORMALIZE = {pp.normalize_mobilenet_v2: 224, pp.normalize_vgg16_imagenet: 224,
             pp.normalize_vgg16_bn_cifar10: 32, pp.normalize_resnet_cifar10: 32}


@pytest.mark.parametrize("fn", NORMALIZE)
def test_normalize_refuses_non_finite_pixels(fn):
    size = NORMALIZE[fn]
    for bad in (np.nan, np.inf, -np.inf):
        x = np.full((2, size, size, 3), 100.0, np.float32)
        x[1, 3, 4, 2] = bad
        with pytest.raises(ValueError, match=r"x contains 1 non-finite value .*index \(1, 3, 4, 2\).*"
                                             r"expected finite pixel values in \[0, 255\]") as err:
            fn(x)
        assert f"the first, {float(bad)}, at" in str(err.value)


@pytest.mark.parametrize("fn", NORMALIZE)
def test_normalize_refuses_pixels_scaled_to_unit_range(fn):
    size = NORMALIZE[fn]
    unit = np.linspace(0, 0.5, 2 * size * size * 3, dtype=np.float32).reshape(2, size, size, 3)  # [0, 1] pixels
    with pytest.raises(ValueError, match=r"x has pixel values in \[0, 0.5\].*scaled to \[0, 1\].*"
                                         r"pixel values in \[0, 255\] are expected"):
        fn(unit)
    with pytest.raises(ValueError, match=r"\[0, 255\] are expected"):
        fn(np.full((1, size, size, 3), 1.0))  # float64, max exactly 1.0
    black = np.zeros((1, size, size, 3), np.float32)  # an all-black image is legitimate
    assert fn(black).shape == black.shape
    mixed = np.concatenate([black, np.full_like(black, 200.0)])  # a black image among ordinary ones
    assert np.isfinite(fn(mixed)).all()
    tiny_u8 = np.ones((1, size, size, 3), np.uint8)  # integer pixels are 0..255 by type: never refused
    assert fn(tiny_u8).shape == tiny_u8.shape


@pytest.mark.parametrize("fn", NORMALIZE)
def test_normalize_refuses_pixels_outside_0_255(fn):
    size = NORMALIZE[fn]
    x = np.full((1, size, size, 3), 128.0, np.float32)
    x[0, 0, 1, 0] = 255.5
    with pytest.raises(ValueError, match=r"x has pixel values in \[128, 255.5\] \(e.g. 255.5 at index "
                                         r"\(0, 0, 1, 0\)\); expected pixel values in \[0, 255\]"):
        fn(x)
    x[0, 0, 1, 0] = -2.0
    with pytest.raises(ValueError, match=r"\[-2, 128\].*-2 at index \(0, 0, 1, 0\)"):
        fn(x)
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):  # already-normalised inputs fed again
        fn(np.linspace(-1, 1, size * size * 3).reshape(1, size, size, 3))
    with pytest.raises(ValueError, match=r"\[300, 300\]"):
        fn(np.full((1, size, size, 3), 300, np.int64))
    # float rounding around a clipped adversarial image stays accepted
    x[0, 0, 1, 0], x[0, 0, 2, 0] = -1e-4, 255 + 1e-4
    assert np.isfinite(fn(x)).all()
    with pytest.raises(TypeError, match=r"x must hold real pixel values.*got dtype bool"):
        fn(np.ones((1, size, size, 3), bool))
    with pytest.raises(TypeError, match=r"dtype complex128"):
        fn(np.ones((1, size, size, 3), complex))


def test_normalize_values_unchanged_for_valid_floats():
    x = RNG.uniform(0, 255, (2, 224, 224, 3)).astype(np.float32)
    np.testing.assert_allclose(pp.normalize_mobilenet_v2(x), x / 127.5 - 1, rtol=1e-6, atol=1e-6)
    assert pp.normalize_resnet_cifar10(np.zeros((0, 32, 32, 3), np.float32)).shape == (0, 32, 32, 3)


def test_unknown_resize_method():
    with pytest.raises(ValueError, match="unknown resize method 'bicubic'"):
        pp.resize_crop(_u8(40, 40, 3), 32, "bicubic")


# ------------------------------------------------------------------------------------ values
def test_mobilenet_inputs_any_size_to_224_in_unit_range():
    imgs = [_u8(375, 500, 3), _u8(500, 333, 3), _u8(227, 227, 3), np.full((100, 80, 3), 255, np.uint8)]
    x = pp.preprocess_mobilenet_v2(imgs)
    assert x.shape == (4, 224, 224, 3) and x.dtype == np.float32
    assert x.min() >= -1 and x.max() <= 1
    np.testing.assert_array_equal(x[3], 1.0)  # 255 -> 1
    np.testing.assert_array_equal(pp.normalize_mobilenet_v2(np.zeros((1, 224, 224, 3))), -1.0)


@pytest.mark.parametrize("method", pp.RESIZE_METHODS)
def test_resize_crop_of_a_256_square_is_the_exact_centre(method):
    img = _u8(256, 256, 3)
    out = pp.resize_crop(img, 224, method)
    assert out.shape == (224, 224, 3) and out.dtype == np.uint8
    if method != "plain":  # 256 -> 256 is no resize; the crop is rows/cols 16..239
        np.testing.assert_array_equal(out, img[16:240, 16:240])


def test_shorter_side_crop_keeps_aspect():
    """A wide image: the shorter side becomes 256, the crop takes the middle of the long side."""
    img = np.zeros((128, 512, 3), np.uint8)
    img[:, 192:320] = 255  # a central vertical band, 1/4 of the width
    out = pp.resize_crop(img, 224, "shorter_256_crop")  # 128x512 -> 256x1024, band 384..640 -> crop 400..624
    assert out[:, 0].max() == 255 and out[:, -1].max() == 255  # the band fills the whole crop
    assert pp.resize_crop(img, 224, "plain")[:, 0].max() == 0


def test_cifar_normalisations():
    x = _u8(3, 32, 32, 3)
    mean, std = pp.vgg16_bn_cifar10_mean_std()
    assert np.allclose(mean, (0.4914, 0.4822, 0.4465)) and np.allclose(std, (0.2470, 0.2435, 0.2616))
    want = (x / 255.0 - np.array(mean)) / np.array(std)
    np.testing.assert_allclose(pp.preprocess_vgg16_bn_cifar10(x), want, rtol=1e-5, atol=1e-5)
    want = (x / 255.0 - np.array(pp.IMAGENET_MEAN)) / np.array(pp.IMAGENET_STD)
    got = pp.preprocess_resnet_cifar10(list(x))
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_vgg16_imagenet_is_keras_caffe():
    x = _u8(2, 224, 224, 3)
    want = keras.applications.vgg16.preprocess_input(x.astype(np.float32))
    np.testing.assert_allclose(pp.normalize_vgg16_imagenet(x.astype(np.float32)), want, atol=1e-4)
    np.testing.assert_allclose(pp.preprocess_vgg16_imagenet(x), pp.normalize_vgg16_imagenet(pp.geometry_imagenet(x)))


def test_empty_batches():
    assert pp.preprocess_resnet_cifar10([]).shape == (0, 32, 32, 3)
    assert pp.preprocess_mobilenet_v2([]).shape == (0, 224, 224, 3)
