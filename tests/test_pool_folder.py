"""`ImagePool.from_folder`: a folder of class subfolders as an image pool, on tiny PNG and JPEG files."""
import numpy as np
import pytest
from PIL import Image

from causadv_lib.data import DataError, ImagePool


def _write(path, pixels: np.ndarray, mode: str | None = None):
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(pixels)
    (img.convert(mode) if mode else img).save(path)
    return pixels


def _pixels(seed: int, h: int = 6, w: int = 5) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.fixture
def folder(tmp_path):
    """cat/ (2 PNGs, one in a subfolder), dog/ (1 PNG, 1 grayscale PNG), a hidden file and a hidden folder."""
    root = tmp_path / "pets"
    px = {"cat/b.png": _write(root / "cat/b.png", _pixels(0)),
          "cat/a/z.png": _write(root / "cat/a/z.png", _pixels(1)),
          "dog/c.PNG": _write(root / "dog/c.PNG", _pixels(2))}
    grey = _pixels(3)[..., 0]
    Image.fromarray(grey).save(root / "dog/d.png")
    px["dog/d.png"] = np.repeat(grey[..., None], 3, axis=2)
    (root / ".DS_Store").write_bytes(b"junk")
    (root / "dog/.hidden.txt").write_text("not an image")
    (root / "cat/.ipynb_checkpoints").mkdir()
    (root / "cat/.ipynb_checkpoints/x.txt").write_text("not an image")
    return root, px


def test_a_folder_of_class_subfolders(folder):
    root, px = folder
    pool = ImagePool.from_folder(root)
    assert pool.name == "pets" and pool.class_names == ("cat", "dog")
    assert pool.ids == ("cat/a/z.png", "cat/b.png", "dog/c.PNG", "dog/d.png")     # sorted by relative path
    np.testing.assert_array_equal(pool.labels, [0, 0, 1, 1])
    batch = pool.load()
    assert isinstance(batch, np.ndarray) and batch.dtype == np.uint8 and batch.shape == (4, 6, 5, 3)
    for k, i in enumerate(pool.ids):
        np.testing.assert_array_equal(batch[k], px[i])                          # lossless PNG, RGB order
    np.testing.assert_array_equal(pool.load([3, 0]), batch[[3, 0]])
    assert pool.index_of(["dog/d.png"]).tolist() == [3]
    again = ImagePool.from_folder(str(root), name="mine")
    assert again.name == "mine" and again.ids == pool.ids                        # the same order every time


def test_class_names_given_and_resizing(folder):
    root, px = folder
    pool = ImagePool.from_folder(root, class_names=["bird", "cat", "dog"], size=(4, 8))
    assert pool.class_names == ("bird", "cat", "dog")
    np.testing.assert_array_equal(pool.labels, [1, 1, 2, 2])
    batch = pool.load([1, 2])
    assert batch.shape == (2, 4, 8, 3) and batch.dtype == np.uint8
    want = np.asarray(Image.fromarray(px["cat/b.png"]).resize((8, 4), Image.BILINEAR))
    np.testing.assert_array_equal(batch[0], want)
    assert pool.load([]).shape == (0, 4, 8, 3)


def test_images_of_different_sizes_load_as_a_list(tmp_path):
    a = _write(tmp_path / "x/a/1.png", _pixels(0, 4, 4))
    b = _write(tmp_path / "x/b/2.jpg", np.full((7, 3, 3), 200, np.uint8))
    pool = ImagePool.from_folder(tmp_path / "x")
    both = pool.load()
    assert isinstance(both, list) and [im.shape for im in both] == [(4, 4, 3), (7, 3, 3)]
    np.testing.assert_array_equal(both[0], a)
    assert np.abs(both[1].astype(int) - b).max() <= 2                            # JPEG, a flat colour
    assert isinstance(pool.load([0]), np.ndarray)


def test_refusals_name_the_file(tmp_path, folder):
    root, _ = folder
    with pytest.raises(DataError, match=r"pool nowhere: .*nowhere is not a folder"):
        ImagePool.from_folder(tmp_path / "nowhere")
    (tmp_path / "empty/cls").mkdir(parents=True)
    with pytest.raises(DataError, match=r"pool empty: no images \(\.png, \.jpg, \.jpeg\) in .*empty"):
        ImagePool.from_folder(tmp_path / "empty")
    (root / "notes.txt").write_text("x")
    with pytest.raises(DataError, match=r"pool pets: .*pets/notes\.txt is outside the class subfolders"):
        ImagePool.from_folder(root)
    (root / "notes.txt").unlink()
    (root / "cat/readme.md").write_text("x")
    with pytest.raises(DataError, match=r"pool pets: .*pets/cat/readme\.md is not an image file \(expected \.png"):
        ImagePool.from_folder(root)
    (root / "cat/readme.md").unlink()
    with pytest.raises(DataError, match=r"the subfolder .*pets/dog is not a class of class_names \(cat, cow\)"):
        ImagePool.from_folder(root, class_names=["cat", "cow"])
    for bad in ((4,), (0, 4), (4.0, 4), "4x4"):
        with pytest.raises(DataError, match="size must be \\(H, W\\), two positive integers"):
            ImagePool.from_folder(root, size=bad)
    (root / "dog/broken.png").write_bytes(b"\x89PNG not really")
    pool = ImagePool.from_folder(root)                                            # read on demand
    k = pool.ids.index("dog/broken.png")
    pool.load([0])
    with pytest.raises(DataError, match=r"cannot decode the image .*pets/dog/broken\.png"):
        pool.load([k])
