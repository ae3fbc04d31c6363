"""Data set readers and pixel decoding: tiny folders built in tmp_path, one test per bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from spn_napari.data.generic import read_generic
from spn_napari.data.images import load_image, load_mask
from spn_napari.data.readers import detect_layout, read_dataset
from spn_napari.data.voc import VOC_CLASSES, read_voc
from spn_napari.errors import DatasetError

# ---------------------------------------------------------------- helpers


def write_png(path: Path, size: tuple[int, int] = (4, 3), value: int = 0) -> Path:
    """A small RGB PNG of (W, H) ``size``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (value, value, value)).save(path)
    return path


def make_generic(
    root: Path,
    *,
    classes: str = "cat\ndog\n",
    images: tuple[str, ...] = ("a.png", "b.png", "c.png"),
    labels: str = "image,labels\na.png,cat\nb,dog; cat\nc,\n",
) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    if classes is not None:
        (root / "classes.txt").write_text(classes, encoding="utf-8")
    for name in images:
        write_png(root / "images" / name)
    if labels is not None:
        (root / "labels.csv").write_text(labels, encoding="utf-8")
    return root


def raises(fn, *needles: str) -> str:
    """Call ``fn``; it must raise DatasetError whose one-line message holds every needle."""
    with pytest.raises(DatasetError) as info:
        fn()
    msg = str(info.value)
    assert "\n" not in msg
    assert " — " in msg  # problem, then the fix
    for needle in needles:
        assert needle in msg, f"{needle!r} not in {msg!r}"
    return msg


# ---------------------------------------------------------------- generic: good inputs


def test_generic_reads_classes_tags_and_order(tmp_path):
    root = make_generic(tmp_path / "ds", images=("c.png", "a.png", "b.jpg"))
    ds = read_generic(root)
    assert ds.layout == "generic" and ds.root == root
    assert ds.classes == ("cat", "dog")
    assert [it.name for it in ds.items] == ["a", "b", "c"]
    assert [it.tags for it in ds.items] == [(0,), (0, 1), ()]  # 'dog; cat' → sorted 0-based
    assert ds.items[1].image_path == root / "images" / "b.jpg"
    assert all(it.mask_path is None for it in ds.items)


def test_generic_names_with_and_without_extension_bom_and_spaces(tmp_path):
    labels = "\ufeff image , labels \na.PNG, cat ;dog;\nb , \n\"c.png\",\"dog\"\n"
    root = make_generic(tmp_path, images=("a.png", "b.png", "c.png"), labels=labels)
    ds = read_generic(root)
    assert {it.name: it.tags for it in ds.items} == {"a": (0, 1), "b": (), "c": (1,)}


def test_generic_ignores_blank_and_hidden_and_single_column_row(tmp_path):
    root = make_generic(tmp_path, classes="\ncat\n\n  dog  \n", labels="image,labels\n\na\nb,dog\n\nc,cat\n")
    (root / "images" / ".DS_Store").write_bytes(b"junk")
    ds = read_generic(root)
    assert ds.classes == ("cat", "dog")
    assert [it.tags for it in ds.items] == [(), (1,), (0,)]


def test_generic_partial_masks(tmp_path):
    root = make_generic(tmp_path)
    (root / "masks").mkdir()
    Image.fromarray(np.zeros((3, 4), np.uint8)).save(root / "masks" / "b.png")
    ds = read_generic(root)
    assert [it.mask_path for it in ds.items] == [None, root / "masks" / "b.png", None]


# ---------------------------------------------------------------- generic: bad inputs


def test_classes_missing(tmp_path):
    root = make_generic(tmp_path, classes=None)
    raises(lambda: read_generic(root), "classes.txt", "no such file")


def test_classes_empty(tmp_path):
    root = make_generic(tmp_path, classes="\n  \n")
    raises(lambda: read_generic(root), "classes.txt", "no class names")


def test_classes_duplicate(tmp_path):
    root = make_generic(tmp_path, classes="cat\ndog\n\nCat\n")
    raises(lambda: read_generic(root), "classes.txt:4", "'Cat'", "line 1")


def test_classes_background(tmp_path):
    root = make_generic(tmp_path, classes="cat\nBackground\n")
    raises(lambda: read_generic(root), "classes.txt:2", "implicit")


def test_images_folder_missing(tmp_path):
    root = make_generic(tmp_path, images=())
    raises(lambda: read_generic(root), str(root / "images"), "no such folder")


def test_images_non_image_file(tmp_path):
    root = make_generic(tmp_path)
    (root / "images" / "notes.txt").write_text("hi")
    raises(lambda: read_generic(root), "notes.txt")


def test_images_same_stem(tmp_path):
    root = make_generic(tmp_path, images=("a.png", "a.jpg", "b.png", "c.png"))
    raises(lambda: read_generic(root), "a.jpg", "a.png", "'a'")


def test_labels_missing(tmp_path):
    root = make_generic(tmp_path, labels=None)
    raises(lambda: read_generic(root), "labels.csv", "no such file")


def test_labels_bad_header(tmp_path):
    root = make_generic(tmp_path, labels="file,tags\na,cat\n")
    raises(lambda: read_generic(root), "labels.csv:1", "image,labels")


def test_labels_semicolon_separated_header(tmp_path):
    root = make_generic(tmp_path, labels="image;labels\na;cat\n")
    raises(lambda: read_generic(root), "labels.csv:1", "commas")


def test_labels_not_utf8(tmp_path):
    root = make_generic(tmp_path, labels=None)
    (root / "labels.csv").write_bytes("image,labels\na,chat\u00e9\n".encode("latin-1"))
    raises(lambda: read_generic(root), "labels.csv", "UTF-8")


def test_labels_unknown_image(tmp_path):
    root = make_generic(tmp_path, labels="image,labels\na,cat\nb,dog\nc,\nzebra.png,cat\n")
    msg = raises(lambda: read_generic(root), "labels.csv:5", "'zebra.png'")
    assert msg.endswith("no image 'zebra.png' in images/ — add it or delete the line.")


def test_labels_duplicate_row(tmp_path):
    root = make_generic(tmp_path, labels="image,labels\na,cat\nb,dog\nc,\na.png,dog\n")
    raises(lambda: read_generic(root), "labels.csv:5", "line 2")


def test_labels_unknown_tag(tmp_path):
    root = make_generic(tmp_path, labels="image,labels\na,cat\nb,horse;dog\nc,\n")
    raises(lambda: read_generic(root), "labels.csv:3", "'horse'", "cat, dog")


def test_labels_too_many_columns(tmp_path):
    root = make_generic(tmp_path, labels="image,labels\na,cat,dog\nb,dog\nc,\n")
    raises(lambda: read_generic(root), "labels.csv:2", "';'")


def test_image_without_row(tmp_path):
    root = make_generic(tmp_path, labels="image,labels\na,cat\nc,\n")
    raises(lambda: read_generic(root), "b.png", "labels.csv", "add a line")


def test_mask_without_image(tmp_path):
    root = make_generic(tmp_path)
    (root / "masks").mkdir()
    Image.fromarray(np.zeros((3, 4), np.uint8)).save(root / "masks" / "zz.png")
    raises(lambda: read_generic(root), "zz.png", "no image 'zz'")


# ---------------------------------------------------------------- pixel decoding


def saved(tmp_path: Path, img: Image.Image, name: str = "x.png") -> Path:
    img.save(tmp_path / name)
    return tmp_path / name


def test_load_rgb_roundtrip(tmp_path):
    a = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3) * 7
    out = load_image(saved(tmp_path, Image.fromarray(a)))
    assert out.dtype == np.uint8 and out.shape == (2, 3, 3)
    np.testing.assert_array_equal(out, a)


def test_load_grayscale(tmp_path):
    out = load_image(saved(tmp_path, Image.fromarray(np.array([[0, 128, 255]], np.uint8), "L")))
    np.testing.assert_array_equal(out, [[[0] * 3, [128] * 3, [255] * 3]])


def test_load_one_bit(tmp_path):
    img = Image.new("1", (2, 1))
    img.putpixel((1, 0), 1)
    out = load_image(saved(tmp_path, img))
    np.testing.assert_array_equal(out, [[[0] * 3, [255] * 3]])


def test_load_rgba_composited_on_black(tmp_path):
    a = np.array([[[200, 100, 50, 128], [10, 20, 30, 255], [255, 255, 255, 0]]], np.uint8)
    out = load_image(saved(tmp_path, Image.fromarray(a, "RGBA")))
    # round(c * a / 255): 200*128/255 = 100.4, 100*128/255 = 50.2, 50*128/255 = 25.1
    np.testing.assert_array_equal(out, [[[100, 50, 25], [10, 20, 30], [0, 0, 0]]])


def test_load_la(tmp_path):
    a = np.array([[[100, 51], [7, 255]]], np.uint8)
    out = load_image(saved(tmp_path, Image.fromarray(a, "LA")))
    np.testing.assert_array_equal(out, [[[20] * 3, [7] * 3]])  # 100*51/255 = 20


def test_load_palette(tmp_path):
    img = Image.fromarray(np.array([[0, 1, 2]], np.uint8), "P")
    img.putpalette([0, 0, 0, 255, 0, 0, 0, 128, 255] + [0] * (253 * 3))
    out = load_image(saved(tmp_path, img))
    np.testing.assert_array_equal(out, [[[0, 0, 0], [255, 0, 0], [0, 128, 255]]])


@pytest.mark.parametrize("name", ["x.png", "x.tif"])
def test_load_16_bit(tmp_path, name):
    a = np.array([[0, 257, 1000, 32768, 65535]], np.uint16)
    out = load_image(saved(tmp_path, Image.fromarray(a), name))
    # v * 255 / 65535 rounded: 0, 1, 3.89 → 4, 127.5019 → 128, 255
    np.testing.assert_array_equal(out[..., 0], [[0, 1, 4, 128, 255]])
    np.testing.assert_array_equal(out[..., 2], out[..., 0])


def test_load_float_tiff(tmp_path):
    unit = np.array([[-0.5, 0.25, 1.0]], np.float32)  # max <= 1: clip to [0, 1]
    out = load_image(saved(tmp_path, Image.fromarray(unit), "u.tif"))
    np.testing.assert_array_equal(out[..., 0], [[0, 64, 255]])  # 0.25*255 = 63.75
    wide = np.array([[10.0, 14.0, 30.0]], np.float32)  # max > 1: min-max
    out = load_image(saved(tmp_path, Image.fromarray(wide), "w.tif"))
    np.testing.assert_array_equal(out[..., 1], [[0, 51, 255]])  # 4/20*255 = 51


def test_truncated_png(tmp_path):
    rng = np.random.default_rng(0)
    path = saved(tmp_path, Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)), "cut.png")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    raises(lambda: load_image(path), str(path), "cannot read")


def test_text_renamed_png(tmp_path):
    path = tmp_path / "fake.png"
    path.write_text("this is not an image\n")
    raises(lambda: load_image(path), str(path), "cannot read")


def test_image_over_pixel_limit(tmp_path, monkeypatch):
    import spn_napari.data.images as images

    monkeypatch.setattr(images, "MAX_PIXELS", 10)
    path = write_png(tmp_path / "big.png", (4, 3))
    raises(lambda: load_image(path), "big.png", "4x3", "limit")


def test_images_subfolder(tmp_path):
    root = make_generic(tmp_path)
    (root / "images" / "more").mkdir()
    raises(lambda: read_generic(root), "more", "folder")


def test_split_on_generic_folder(tmp_path):
    root = make_generic(tmp_path)
    raises(lambda: read_dataset(root, split="val"), "split 'val'", "VOC")


def test_missing_image_file(tmp_path):
    raises(lambda: load_image(tmp_path / "gone.png"), "gone.png", "no such file")


def test_mask_palette_indices_and_gray(tmp_path):
    m = Image.fromarray(np.array([[0, 1, 255], [2, 0, 15]], np.uint8), "P")
    m.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0] + [9] * (253 * 3))
    out = load_mask(saved(tmp_path, m, "p.png"), (2, 3))
    np.testing.assert_array_equal(out, [[0, 1, 255], [2, 0, 15]])
    out = load_mask(saved(tmp_path, Image.fromarray(np.array([[3, 0]], np.uint8), "L"), "l.png"), (1, 2))
    np.testing.assert_array_equal(out, [[3, 0]])
    assert out.dtype == np.uint8


def test_mask_size_mismatch(tmp_path):
    path = saved(tmp_path, Image.fromarray(np.zeros((3, 4), np.uint8)), "m.png")
    raises(lambda: load_mask(path, (5, 4)), "m.png", "4x3", "4x5")


def test_mask_unreadable(tmp_path):
    path = tmp_path / "m.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    raises(lambda: load_mask(path, (1, 1)), "m.png", "cannot read")


def test_mask_colour_rejected(tmp_path):
    path = saved(tmp_path, Image.new("RGB", (2, 2), (255, 0, 0)), "c.png")
    raises(lambda: load_mask(path, (2, 2)), "c.png", "colour")


# ---------------------------------------------------------------- VOC


def voc_xml(*names: str) -> str:
    objs = "".join(
        f"<object><name>{n}</name><difficult>0</difficult><bndbox><xmin>1</xmin></bndbox></object>"
        for n in names
    )
    return f"<annotation><filename>x.jpg</filename>{objs}</annotation>"


def voc_mask(path: Path, values: list[int], size: tuple[int, int] = (6, 5)) -> None:
    """A palette mask (W, H) ``size``: a 255 border around blocks of the given class values."""
    w, h = size
    a = np.zeros((h, w), np.uint8)
    for i, v in enumerate(values):
        a[1 : h - 1, 1 + i] = v
    a[0, :] = a[-1, :] = a[:, 0] = a[:, -1] = 255
    img = Image.fromarray(a, "P")
    img.putpalette([(i * 37) % 256 for i in range(768)])
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)


def make_voc(root: Path, *, lists: dict[str, str] | None = None) -> Path:
    (root / "JPEGImages").mkdir(parents=True)
    (root / "Annotations").mkdir()
    for name in ("2007_000001", "2007_000002", "2007_000003"):
        Image.new("RGB", (6, 5), (90, 10, 10)).save(root / "JPEGImages" / f"{name}.jpg")
    (root / "Annotations" / "2007_000001.xml").write_text(voc_xml("person", "dog", "person"))
    (root / "Annotations" / "2007_000002.xml").write_text(voc_xml("aeroplane"))
    voc_mask(root / "SegmentationClass" / "2007_000001.png", [15, 12])
    voc_mask(root / "SegmentationClass" / "2007_000003.png", [20, 8])  # no XML: tags from mask
    lists = {"train": "2007_000003\n2007_000001\n", "val": "2007_000002\n"} if lists is None else lists
    if lists:
        (root / "ImageSets" / "Segmentation").mkdir(parents=True)
        for split, text in lists.items():
            (root / "ImageSets" / "Segmentation" / f"{split}.txt").write_text(text)
    return root


def test_voc_reads_classes_tags_masks(tmp_path):
    root = make_voc(tmp_path / "VOC2012")
    ds = read_voc(root)
    assert ds.layout == "voc" and len(ds.classes) == 20
    assert ds.classes[0] == "aeroplane" and ds.classes[-1] == "tvmonitor"
    assert [it.name for it in ds.items] == ["2007_000001", "2007_000002", "2007_000003"]
    by = {it.name: it for it in ds.items}
    assert by["2007_000001"].tags == (VOC_CLASSES.index("dog"), VOC_CLASSES.index("person"))
    assert by["2007_000002"].tags == (0,)
    assert by["2007_000003"].tags == (7, 19)  # mask values 8 (cat) and 20 (tvmonitor), 255 skipped
    assert by["2007_000001"].mask_path == root / "SegmentationClass" / "2007_000001.png"
    assert by["2007_000002"].mask_path is None
    assert by["2007_000001"].image_path == root / "JPEGImages" / "2007_000001.jpg"
    mask = load_mask(by["2007_000001"].mask_path, (5, 6))
    assert set(np.unique(mask)) == {0, 12, 15, 255}


def test_voc_split_and_fallbacks(tmp_path):
    root = make_voc(tmp_path / "a")
    assert [it.name for it in read_voc(root, split="val").items] == ["2007_000002"]
    root = make_voc(tmp_path / "b", lists={"trainval": "2007_000002\n"})
    assert [it.name for it in read_voc(root).items] == ["2007_000002"]
    root = make_voc(tmp_path / "c", lists={})
    assert len(read_voc(root).items) == 3  # no lists: every JPEG


def test_voc_missing_split(tmp_path):
    root = make_voc(tmp_path)
    raises(lambda: read_voc(root, split="test"), "test.txt", "train, val")


def test_voc_listed_name_without_jpeg(tmp_path):
    root = make_voc(tmp_path, lists={"trainval": "2007_000001\n\n2007_000009\n"})
    raises(lambda: read_voc(root), "trainval.txt:3", "'2007_000009'")


def test_voc_unknown_xml_class(tmp_path):
    root = make_voc(tmp_path)
    (root / "Annotations" / "2007_000002.xml").write_text(voc_xml("unicorn"))
    raises(lambda: read_voc(root), "2007_000002.xml", "'unicorn'")


def test_voc_broken_xml(tmp_path):
    root = make_voc(tmp_path)
    (root / "Annotations" / "2007_000002.xml").write_text("<annotation><object>")
    raises(lambda: read_voc(root), "2007_000002.xml", "cannot parse")


def test_voc_no_xml_no_mask(tmp_path):
    root = make_voc(tmp_path)
    (root / "Annotations" / "2007_000002.xml").unlink()
    raises(lambda: read_voc(root), "2007_000002.xml", "SegmentationClass/2007_000002.png")


# ---------------------------------------------------------------- detection and dispatch


def test_detect_layout_and_read_dataset(tmp_path):
    gen = make_generic(tmp_path / "gen")
    voc = make_voc(tmp_path / "VOCdevkit" / "VOC2012")
    assert detect_layout(gen) == "generic" and detect_layout(voc) == "voc"
    assert read_dataset(str(gen)).layout == "generic"
    assert read_dataset(voc, split="train").layout == "voc"


def test_read_dataset_missing_folder(tmp_path):
    raises(lambda: read_dataset(tmp_path / "nope"), "nope", "no such folder", "JPEGImages/")


def test_read_dataset_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    raises(lambda: read_dataset(tmp_path / "empty"), "empty", "classes.txt")


def test_read_dataset_foreign_folder_hints_voc2012(tmp_path):
    make_voc(tmp_path / "VOCdevkit" / "VOC2012")
    msg = raises(lambda: read_dataset(tmp_path / "VOCdevkit"), "VOCdevkit", "not a data set folder")
    assert "VOC2012" in msg


def test_read_dataset_generic_names_missing_piece(tmp_path):
    root = make_generic(tmp_path, classes=None)
    raises(lambda: read_dataset(root), "classes.txt", "no such file")
