"""Data discovery, pairing, problems, mask conversion, splits and the check CLI."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nail_segformer import data
from nail_segformer.data import DataError, Pair
from nail_segformer.data.cli import main as check_main


def _photo(path, size=(40, 30), color=(200, 150, 120), exif_orientation=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", size, color)
    if exif_orientation is None:
        image.save(path)
    else:
        exif = Image.Exif()
        exif[0x0112] = exif_orientation
        image.save(path, exif=exif)


def _mask(path, size=(40, 30), box=(5, 5, 15, 12), mode="L", on=255):
    path.parent.mkdir(parents=True, exist_ok=True)
    array = np.zeros((size[1], size[0]), dtype=np.uint8)
    array[box[1] : box[3], box[0] : box[2]] = 1
    Image.fromarray(array * on).convert(mode).save(path)


def _pair(root, category, stem, image_ext=".jpg", mask_ext=".png", **kwargs):
    image_dir = root / "Images" / category if category else root / "Images"
    mask_dir = root / "Masks" / category if category else root / "Masks"
    _photo(image_dir / f"{stem}{image_ext}", **kwargs)
    _mask(mask_dir / f"{stem}{mask_ext}", size=kwargs.get("size", (40, 30)))


@pytest.fixture
def clean_root(tmp_path):
    root = tmp_path / "nails"
    for category in ("1", "2", "3", "4"):
        for i in range(10):
            _pair(root, category, f"n_{category}_{i:02d}")
    return root


def _kinds(scan):
    return sorted(p.kind for p in scan.problems)


# --------------------------------------------------------------------------- pairing rules


def test_clean_categorised_layout_pairs_everything(clean_root):
    scan = data.find_pairs(clean_root)
    assert scan.problems == []
    assert len(scan.pairs) == 40
    assert {p.category for p in scan.pairs} == {"1", "2", "3", "4"}
    for pair in scan.pairs:
        assert pair.image.endswith(".jpg") and pair.mask.endswith(".png")
        assert pair.image.split("/")[-1][:-4] == pair.mask.split("/")[-1][:-4]


def test_flat_layout_uses_root_category(tmp_path):
    for i in range(3):
        _pair(tmp_path, None, f"x{i}")
    scan = data.find_pairs(tmp_path)
    assert scan.problems == []
    assert {p.category for p in scan.pairs} == {data.ROOT_CATEGORY}


def test_pairing_ignores_case_and_extension(tmp_path):
    _photo(tmp_path / "Images" / "Cat" / "IMG_01.JPG")
    _mask(tmp_path / "masks" / "cat" / "img_01.png")
    scan = data.find_pairs(tmp_path)
    assert scan.problems == []
    assert len(scan.pairs) == 1


def test_format_is_decided_by_decoding_not_extension(tmp_path):
    # A PNG photo saved with a .jpg name, a mask with no extension at all.
    (tmp_path / "Images").mkdir()
    Image.new("RGB", (40, 30)).save(tmp_path / "Images" / "a.jpg", format="PNG")
    (tmp_path / "Masks").mkdir()
    Image.new("L", (40, 30), 255).save(tmp_path / "Masks" / "a.bin", format="PNG")
    scan = data.find_pairs(tmp_path)
    assert scan.problems == [] and len(scan.pairs) == 1


@pytest.mark.parametrize("name", [".DS_Store", "Thumbs.db", "._n_1_00.jpg", "desktop.ini"])
def test_hidden_and_os_files_are_ignored(clean_root, name):
    (clean_root / "Images" / "1" / name).write_bytes(b"\x00junk")
    (clean_root / "Masks" / "1" / name).write_bytes(b"\x00junk")
    scan = data.find_pairs(clean_root)
    assert scan.problems == []
    assert len(scan.pairs) == 40


def test_presplit_layout_keeps_given_splits(tmp_path):
    for split_dir, n in (("train", 4), ("valid", 2), ("test", 1)):
        for i in range(n):
            _photo(tmp_path / split_dir / "images" / f"{split_dir}{i}.jpg")
            _mask(tmp_path / split_dir / "masks" / f"{split_dir}{i}.png")
    scan = data.find_pairs(tmp_path)
    assert scan.problems == []
    splits = data.split_pairs(scan.pairs, 0.1, 0.1, seed=0)
    counts = {s: sum(p.split == s for p in splits) for s in data.SPLITS}
    assert counts == {"train": 4, "validation": 2, "test": 1}


def test_unknown_layout_is_explained(tmp_path):
    (tmp_path / "photos").mkdir()
    with pytest.raises(DataError, match="matches no known layout"):
        data.find_pairs(tmp_path)


def test_missing_masks_folder_is_explained(tmp_path):
    _photo(tmp_path / "Images" / "a.jpg")
    with pytest.raises(DataError, match="no Masks/"):
        data.find_pairs(tmp_path)


# --------------------------------------------------------------------------- folders as they come


@pytest.mark.parametrize("suffix", ["_mask", "-mask", "_label", "_gt", "_segmentation"])
def test_masks_named_after_their_photo_plus_a_suffix_pair(tmp_path, suffix, caplog):
    for category in ("1", "2"):
        for i in range(3):
            _photo(tmp_path / "Images" / category / f"IMG_{i:04d}.jpg")
            _mask(tmp_path / "Masks" / category / f"IMG_{i:04d}{suffix}.png")
    with caplog.at_level("INFO", logger="nail_segformer.data.discovery"):
        scan = data.find_pairs(tmp_path)
    assert scan.problems == [] and len(scan.pairs) == 6
    assert all(p.mask.endswith(f"{Path(p.image).stem}{suffix}.png") for p in scan.pairs)
    [line] = [r.getMessage() for r in caplog.records if "paired that way" in r.getMessage()]
    assert repr(suffix) in line and "--mask_suffix" in line


def test_a_given_mask_suffix_is_used_and_named_when_a_mask_is_missing(tmp_path):
    for i in range(3):
        _photo(tmp_path / "Images" / f"p{i}.jpg")
    _mask(tmp_path / "Masks" / "p0.lbl.png")
    _mask(tmp_path / "Masks" / "p1.lbl.png")
    scan = data.find_pairs(tmp_path, mask_suffix=".lbl")
    assert len(scan.pairs) == 2
    [missing] = scan.problems
    assert missing.kind == "missing mask" and "p2.lbl.png" in missing.message
    assert "--mask_suffix .lbl" in missing.fix


def test_a_lone_mask_that_happens_to_end_in_mask_is_not_a_suffix(tmp_path):
    _pair(tmp_path, "1", "a")
    _mask(tmp_path / "Masks" / "1" / "notes_mask.png")
    scan = data.find_pairs(tmp_path)
    assert _kinds(scan) == ["missing photo"] and len(scan.pairs) == 1


@pytest.mark.parametrize("masks", ["labels", "annotations", "gt"])
def test_the_usual_mask_folder_names_are_accepted(tmp_path, masks, caplog):
    for i in range(2):
        _photo(tmp_path / "images" / f"p{i}.jpg")
        _mask(tmp_path / masks / f"p{i}.png")
    with caplog.at_level("INFO", logger="nail_segformer.data.discovery"):
        scan = data.find_pairs(tmp_path)
    assert scan.problems == [] and len(scan.pairs) == 2
    assert any(f"masks are read from {masks}/" in r.getMessage() for r in caplog.records)


def test_presplit_images_and_labels_pair(tmp_path):
    for split_dir in ("train", "valid"):
        for i in range(2):
            _photo(tmp_path / split_dir / "images" / f"{split_dir}{i}.jpg")
            _mask(tmp_path / split_dir / "labels" / f"{split_dir}{i}_mask.png")
    scan = data.find_pairs(tmp_path)
    assert scan.problems == [] and {p.split for p in scan.pairs} == {"train", "validation"}
    assert len(scan.pairs) == 4


def test_the_checker_takes_mask_suffix(tmp_path, capsys):
    _photo(tmp_path / "Images" / "a.jpg")
    _mask(tmp_path / "Masks" / "a~m.png")
    assert check_main([str(tmp_path), "--mask_suffix", "~m", "--headers_only"]) == 0
    assert "1 pair" in capsys.readouterr().out


# --------------------------------------------------------------------------- one test per problem


def test_image_without_mask_names_the_file(clean_root):
    (clean_root / "Masks" / "2" / "n_2_03.png").unlink()
    scan = data.find_pairs(clean_root)
    assert _kinds(scan) == ["missing mask"]
    assert "Images/2/n_2_03.jpg" in str(scan.problems[0])
    assert "Masks/2/n_2_03.png" in scan.problems[0].message


def test_mask_without_image_names_the_file(clean_root):
    _mask(clean_root / "Masks" / "3" / "stray.png")
    scan = data.find_pairs(clean_root)
    assert _kinds(scan) == ["missing photo"]
    assert scan.problems[0].path == "Masks/3/stray.png"


def test_undecodable_image_names_the_file(clean_root):
    (clean_root / "Images" / "1" / "n_1_04.jpg").write_bytes(b"this is not a jpeg")
    scan = data.find_pairs(clean_root)
    assert _kinds(scan) == ["undecodable file"]
    assert scan.problems[0].path == "Images/1/n_1_04.jpg"
    assert len(scan.pairs) == 39


def test_undecodable_mask_names_the_file(clean_root):
    (clean_root / "Masks" / "1" / "n_1_05.png").write_bytes(b"\x89PNG broken")
    scan = data.find_pairs(clean_root)
    assert _kinds(scan) == ["undecodable file"]
    assert scan.problems[0].path == "Masks/1/n_1_05.png"


def test_non_image_file_in_images_is_reported_once(clean_root):
    (clean_root / "Images" / "1" / "notes.txt").write_text("shot on a phone")
    scan = data.find_pairs(clean_root)
    assert _kinds(scan) == ["undecodable file"]
    assert scan.problems[0].path == "Images/1/notes.txt"


def test_size_mismatch_names_both_files(clean_root):
    _mask(clean_root / "Masks" / "4" / "n_4_01.png", size=(41, 30))
    scan = data.find_pairs(clean_root)
    assert _kinds(scan) == ["size mismatch"]
    problem = scan.problems[0]
    assert problem.path == "Images/4/n_4_01.jpg" and "Masks/4/n_4_01.png" in problem.message
    assert "40x30" in problem.message and "41x30" in problem.message


def test_exif_rotated_photo_matches_rotated_mask(tmp_path):
    # Stored 40x30 with orientation 6 (rotate 90): seen as 30x40, as its mask is.
    _photo(tmp_path / "Images" / "a.jpg", size=(40, 30), exif_orientation=6)
    _mask(tmp_path / "Masks" / "a.png", size=(30, 40))
    scan = data.find_pairs(tmp_path)
    assert scan.problems == [] and len(scan.pairs) == 1


def test_empty_mask_folder_is_one_problem(clean_root):
    for mask in (clean_root / "Masks" / "2").iterdir():
        mask.unlink()
    scan = data.find_pairs(clean_root)
    assert _kinds(scan) == ["empty mask folder"]
    assert scan.problems[0].path == "Masks/2"
    assert "10 photo(s)" in scan.problems[0].message


def test_duplicate_stems_are_reported(clean_root):
    _photo(clean_root / "Images" / "1" / "n_1_00.png")
    scan = data.find_pairs(clean_root)
    assert _kinds(scan) == ["duplicate stem"]
    assert "Images/1/n_1_00.jpg" in scan.problems[0].message
    assert "Images/1/n_1_00.png" in scan.problems[0].message


def test_no_pairs_at_all(tmp_path):
    (tmp_path / "Images").mkdir()
    (tmp_path / "Masks").mkdir()
    scan = data.find_pairs(tmp_path)
    assert _kinds(scan) == ["no pairs"]


def test_load_splits_lists_every_problem_in_one_error(clean_root):
    (clean_root / "Masks" / "2" / "n_2_03.png").unlink()
    (clean_root / "Images" / "1" / "n_1_04.jpg").write_bytes(b"junk")
    _mask(clean_root / "Masks" / "4" / "n_4_01.png", size=(41, 30))
    with pytest.raises(DataError) as info:
        data.load_splits(clean_root)
    message = str(info.value)
    for fragment in ("Images/2/n_2_03.jpg", "Images/1/n_1_04.jpg", "Images/4/n_4_01.jpg"):
        assert fragment in message
    assert "3 problem(s)" in message and "--on_bad_pair skip" in message


def test_load_splits_skip_trains_without_bad_pairs(clean_root):
    (clean_root / "Masks" / "2" / "n_2_03.png").unlink()
    dataset_dict, pairs, scan = data.load_splits(clean_root, on_bad_pair="skip")
    assert len(pairs) == 39 and len(scan.problems) == 1
    assert sum(len(ds) for ds in dataset_dict.values()) == 39


def test_data_root_is_never_modified(clean_root):
    (clean_root / "Masks" / "2" / "n_2_03.png").unlink()
    before = {p: p.stat().st_mtime_ns for p in clean_root.rglob("*")}
    data.load_splits(clean_root, on_bad_pair="skip")
    check_main([str(clean_root), "--json"])
    after = {p: p.stat().st_mtime_ns for p in clean_root.rglob("*")}
    assert after == before


# --------------------------------------------------------------------------- masks


_TRUTH = np.zeros((6, 8), dtype=np.uint8)
_TRUTH[1:4, 2:6] = 1


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: Image.fromarray(_TRUTH * 255, "L"), id="L-0-255"),
        pytest.param(lambda: Image.fromarray(_TRUTH, "L"), id="L-0-1"),
        pytest.param(lambda: Image.fromarray(_TRUTH * 255, "L").convert("1"), id="1-bit"),
        pytest.param(
            lambda: Image.fromarray(np.stack([_TRUTH * 255] * 3, -1), "RGB"), id="RGB-white"
        ),
        pytest.param(
            lambda: Image.fromarray(np.stack([_TRUTH * 200, _TRUTH * 0, _TRUTH * 0], -1), "RGB"),
            id="RGB-red",
        ),
        pytest.param(
            lambda: Image.fromarray(
                np.stack([_TRUTH * 255] * 3 + [np.full_like(_TRUTH, 255)], -1), "RGBA"
            ),
            id="RGBA-opaque",
        ),
        pytest.param(
            lambda: Image.fromarray(
                np.stack([np.full_like(_TRUTH, 255)] * 3 + [_TRUTH * 255], -1), "RGBA"
            ),
            id="RGBA-transparent-background",
        ),
        pytest.param(lambda: _palette_mask(_TRUTH), id="P-indices"),
        pytest.param(lambda: _palette_mask(_TRUTH * 7, color=(0, 255, 0)), id="P-colour"),
        pytest.param(lambda: Image.fromarray(_TRUTH.astype(np.uint16) * 65535), id="16-bit-full"),
        pytest.param(
            lambda: Image.fromarray(_TRUTH.astype(np.uint16) * 255), id="16-bit-8bit-data"
        ),
        pytest.param(lambda: Image.fromarray(_TRUTH.astype(np.float32)), id="F-0-1"),
    ],
)
def test_every_mask_mode_converts_to_zero_one(make):
    labels = data.mask_to_labels(make())
    assert labels.dtype == np.uint8
    np.testing.assert_array_equal(labels, _TRUTH)


def _palette_mask(indices, color=(128, 0, 0)):
    image = Image.fromarray(indices.astype(np.uint8), "P")
    palette = [0, 0, 0] + list(color) * 255
    image.putpalette(palette)
    return image


def test_antialiased_edges_threshold_at_half_range():
    array = np.array([[0, 100, 127, 128, 200, 255]], dtype=np.uint8)
    labels = data.mask_to_labels(Image.fromarray(array, "L"))
    np.testing.assert_array_equal(labels, [[0, 0, 0, 1, 1, 1]])


def test_labels_never_contain_255():
    labels = data.mask_to_labels(Image.fromarray(_TRUTH * 255, "L"))
    assert set(np.unique(labels)) <= {data.BACKGROUND, data.NAIL}


# The mask conventions table (nail_segformer/data/files.py): each row, read from a file.
_NAIL = np.zeros((6, 8), dtype=np.uint8)
_NAIL[1:4, 2:6] = 1
_BORDER = np.zeros((6, 8), dtype=bool)  # a VOC-style "ignore" ring around the nail
_BORDER[0:5, 1:7] = True
_BORDER[1:4, 2:6] = False


def _voc(nail_value=1):
    values = _NAIL * nail_value
    values[_BORDER] = 255
    return values


def _antialiased():
    values = _NAIL * 255
    values[1, 2], values[3, 5], values[0, 3] = 200, 140, 60  # grey edge pixels
    return values


_CONVENTIONS = [
    # id, stored values, PIL mode, expected labels, convention name
    ("only-0", np.zeros((6, 8), np.uint8), "L", np.zeros((6, 8), np.uint8), "0"),
    ("0-1", _NAIL, "L", _NAIL, "0/1"),
    ("only-1", np.ones((6, 8), np.uint8), "L", np.ones((6, 8), np.uint8), "0/1"),
    ("0-255", _NAIL * 255, "L", _NAIL, "0/255"),
    ("0-255-antialiased", _antialiased(), "L", (_antialiased() >= 128).astype(np.uint8), "0/255"),
    ("0-1-255-voc", _voc(), "L", np.where(_BORDER, 255, _NAIL).astype(np.uint8), "0/1/255"),
    ("16-bit-0-65535", _NAIL.astype(np.uint16) * 65535, None, _NAIL, "0/255"),
    ("16-bit-voc", _voc().astype(np.uint16), None, _voc(), "0/1/255"),
]


@pytest.mark.parametrize(
    ("values", "mode", "expected", "convention"),
    [pytest.param(*row[1:], id=row[0]) for row in _CONVENTIONS],
)
def test_mask_conventions_table(tmp_path, values, mode, expected, convention):
    path = tmp_path / "mask.png"
    Image.fromarray(values, mode).save(path)
    labels, found = data.load_labels(path, return_convention=True)
    assert found == convention
    assert labels.dtype == np.uint8
    np.testing.assert_array_equal(labels, expected)


def test_voc_mask_keeps_its_nails_and_ignores_its_border(tmp_path):
    # The bug this table fixes: thresholding {0, 1, 255} at 128 made every nail pixel background
    # and the ignore border nail.
    path = tmp_path / "voc.png"
    Image.fromarray(_voc(), "L").save(path)
    labels = data.load_labels(path)
    assert (labels[_NAIL == 1] == data.NAIL).all()
    assert (labels[_BORDER] == data.IGNORE_INDEX).all()


def test_palette_mask_is_read_by_its_indices_not_its_colours(tmp_path):
    # VOC palette: index 1 shows dark red (128, 0, 0) and the 255 border cream (224, 224, 192);
    # read by brightness, both would be "nail".
    image = Image.fromarray(_voc().astype(np.uint8), "P")
    palette = [0, 0, 0, 128, 0, 0] + [0, 0, 0] * 253 + [224, 224, 192]
    image.putpalette(palette)
    image.save(tmp_path / "voc_palette.png")
    labels, convention = data.load_labels(tmp_path / "voc_palette.png", return_convention=True)
    assert convention == "0/1/255"
    np.testing.assert_array_equal(labels, np.where(_BORDER, 255, _NAIL))


@pytest.mark.parametrize(
    ("values", "named"),
    [
        pytest.param(np.minimum(_NAIL * 2 + _BORDER, 2).astype(np.uint8), "{0, 1, 2}", id="0-1-2"),
        pytest.param(
            np.where(_BORDER, 255, _NAIL * 2).astype(np.uint8), "{0, 2, 255}", id="0-2-255"
        ),
        pytest.param((_NAIL * 100).astype(np.uint8), "{0, 100}", id="0-100"),
        pytest.param(np.full((6, 8), 255, np.uint8), "only the value 255", id="only-255"),
    ],
)
def test_unknown_value_sets_are_refused_naming_file_and_values(tmp_path, values, named):
    path = tmp_path / "classes.png"
    Image.fromarray(values, "L").save(path)
    with pytest.raises(data.MaskValuesError, match="classes.png") as caught:
        data.load_labels(path)
    assert named in str(caught.value) and "--nail_values" in str(caught.value)


def test_resized_voc_mask_is_refused_not_thresholded(tmp_path):
    # A 0/1/255 mask resized with bilinear interpolation gains greys between 1 and 255; read as
    # an anti-aliased 0/255 mask it would turn the border into nail and the nails into background.
    big = np.kron(_voc(), np.ones((8, 8), np.uint8))
    resized = Image.fromarray(big, "L").resize((40, 30), Image.Resampling.BILINEAR)
    resized.save(tmp_path / "resized.png")
    with pytest.raises(data.MaskValuesError, match="resized"):
        data.load_labels(tmp_path / "resized.png")


def _drawn_nails(seed: int) -> np.ndarray:
    """The nails of a synthetic 480x360 photo: a real mask's shapes and sizes."""
    from nail_segformer.synthetic import render_sample

    return np.asarray(render_sample(seed, 1, "2", size=(480, 360)).mask) > 0


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize(
    ("colour", "convention"),
    [((255, 255, 255), "0/255"), ((255, 0, 0), "colour"), ((250, 50, 83), "colour")],
    ids=["white", "red", "cvat-red"],
)
@pytest.mark.parametrize(("quality", "subsampling"), [(75, 2), (95, 0), (95, 2)])
def test_jpeg_masks_read_as_the_masks_they_were(
    tmp_path, seed, colour, convention, quality, subsampling
):
    # JPEG turns a mask's two colours into many: greys whose exact 1s used to read as a resized
    # 0/1/255 mask, and shades that used to read as several classes. Both were refused.
    nails = _drawn_nails(seed)
    drawn = np.zeros((*nails.shape, 3), np.uint8)
    drawn[nails] = colour
    image = Image.fromarray(drawn[..., 0] if convention == "0/255" else drawn)
    image.save(tmp_path / "mask.jpg", quality=quality, subsampling=subsampling)
    labels, found = data.load_labels(tmp_path / "mask.jpg", return_convention=True)
    assert found == convention
    assert _iou(labels == data.NAIL, nails) >= 0.99
    if convention == "colour":
        chosen = data.load_labels(tmp_path / "mask.jpg", data.parse_nail_values(
            "#{:02x}{:02x}{:02x}".format(*colour)))  # fmt: skip
        assert _iou(chosen == data.NAIL, nails) >= 0.99


def test_a_jpeg_mask_of_two_classes_is_refused_naming_its_colours(tmp_path):
    import cv2

    nails = _drawn_nails(1)
    fingers = cv2.dilate(nails.astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
    drawn = np.zeros((*nails.shape, 3), np.uint8)
    drawn[fingers] = (36, 179, 83)
    drawn[nails] = (250, 50, 83)
    Image.fromarray(drawn).save(tmp_path / "cvat.jpg", quality=90)
    with pytest.raises(data.MaskValuesError, match=r"cvat.jpg is a JPEG holding regions of #"):
        data.load_labels(tmp_path / "cvat.jpg")
    labels = data.load_labels(tmp_path / "cvat.jpg", data.parse_nail_values("#fa3253"))
    # Where nail meets finger, JPEG mixes the two colours (0.986 measured): not where nail
    # meets black, as in the one-colour masks above.
    assert _iou(labels == data.NAIL, nails) >= 0.98


def test_colour_mask_of_several_classes_is_refused(tmp_path):
    colours = np.zeros((6, 8, 3), np.uint8)
    colours[_NAIL == 1] = (250, 50, 83)
    colours[_BORDER] = (36, 179, 83)  # a second class, e.g. "finger"
    Image.fromarray(colours, "RGB").save(tmp_path / "cvat.png")
    with pytest.raises(data.MaskValuesError, match="several colours.*#fa3253"):
        data.load_labels(tmp_path / "cvat.png")
    labels = data.load_labels(tmp_path / "cvat.png", data.parse_nail_values("#fa3253"))
    np.testing.assert_array_equal(labels, _NAIL)


@pytest.mark.parametrize(
    ("values", "nail_values", "expected"),
    [
        pytest.param((_NAIL * 2 + _BORDER).astype(np.uint8), "2", _NAIL, id="class-indices-nail-2"),
        pytest.param(
            (_NAIL * 2 + _BORDER * 3).astype(np.uint8), "1,2", _NAIL, id="two-values-are-nail"
        ),
        pytest.param(
            _voc(), "1", np.where(_BORDER, 255, _NAIL).astype(np.uint8), id="255-stays-ignored"
        ),
        pytest.param(np.full((6, 8), 255, np.uint8), "255", np.ones((6, 8), np.uint8), id="255"),
    ],
)
def test_nail_values_choose_which_values_are_nail(tmp_path, values, nail_values, expected):
    Image.fromarray(values, "L").save(tmp_path / "m.png")
    labels, convention = data.load_labels(
        tmp_path / "m.png", data.parse_nail_values(nail_values), return_convention=True
    )
    assert convention == "nail_values"
    np.testing.assert_array_equal(labels, expected)


@pytest.mark.parametrize("text", ["", "two", "-1", "70000", "#12345", "1,,2"])
def test_bad_nail_values_name_the_flag(text):
    if not text:
        assert data.parse_nail_values(text) is None
        return
    with pytest.raises(ValueError, match="--nail_values"):
        data.parse_nail_values(text)


def test_checker_reports_mask_conventions_per_category(tmp_path, capsys):
    root = tmp_path / "nails"
    (root / "Masks" / "2").mkdir(parents=True)
    scaled = np.ones((5, 5), np.uint8)  # 6x8 label maps to the 40x30 photos
    for i in range(3):
        _pair(root, "1", f"a{i}")  # 0/255 masks
        _photo(root / "Images" / "2" / f"b{i}.jpg")
        Image.fromarray(np.kron(_voc(), scaled)).save(root / "Masks" / "2" / f"b{i}.png")
    _photo(root / "Images" / "2" / "c.jpg")
    classes = np.kron(_NAIL * 2 + _BORDER, scaled).astype(np.uint8)  # {0, 1, 2}
    Image.fromarray(classes).save(root / "Masks" / "2" / "c.png")
    assert check_main([str(root), "--json"]) == 1
    summary = json.loads(capsys.readouterr().out)
    assert summary["mask_conventions"] == {"1": {"0/255": 3}, "2": {"0/1/255": 3}}
    [problem] = summary["problems"]
    assert problem["kind"] == "mask values" and problem["path"] == "Masks/2/c.png"
    assert "{0, 1, 2}" in problem["message"]
    assert check_main([str(root)]) == 1
    assert "0/1/255 x3" in capsys.readouterr().out
    # With the values named, the class-index mask is read too.
    assert check_main([str(root), "--json", "--nail_values", "1"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["mask_conventions"]["2"] == {"nail_values": 4}


def test_load_image_applies_exif_and_rgb(tmp_path):
    path = tmp_path / "rot.jpg"
    _photo(path, size=(40, 30), exif_orientation=6)
    image = data.load_image(path)
    assert image.mode == "RGB" and image.size == (30, 40)


def test_load_image_error_names_the_file(tmp_path):
    path = tmp_path / "bad.jpg"
    path.write_bytes(b"nope")
    with pytest.raises(data.ImageReadError, match="bad.jpg"):
        data.load_image(path)


# --------------------------------------------------------------------------- splits


def _pairs(counts):
    return [
        Pair(f"/d/Images/{c}/{i}.jpg", f"/d/Masks/{c}/{i}.png", c)
        for c, n in counts.items()
        for i in range(n)
    ]


def test_split_is_stratified_by_category():
    pairs = data.split_pairs(_pairs({"1": 50, "2": 30, "3": 20}), 0.2, 0.1, seed=1)
    for category, n in (("1", 50), ("2", 30), ("3", 20)):
        members = [p for p in pairs if p.category == category]
        assert sum(p.split == "validation" for p in members) == round(n * 0.2)
        assert sum(p.split == "test" for p in members) == round(n * 0.1)


def test_split_is_deterministic_and_order_independent():
    pairs = _pairs({"1": 40, "2": 40})
    first = data.split_pairs(pairs, 0.1, 0.1, seed=7)
    again = data.split_pairs(list(reversed(pairs)), 0.1, 0.1, seed=7)
    other = data.split_pairs(pairs, 0.1, 0.1, seed=8)
    assert first == again
    assert first != other


def test_split_sizes_follow_the_fractions_overall():
    # Four categories of 4: 10% of 16 is 2 for validation and 2 for test, though no single
    # category's share rounds up on its own.
    pairs = data.split_pairs(_pairs({"1": 4, "2": 4, "3": 4, "4": 4}), 0.1, 0.1, seed=0)
    counts = {s: sum(p.split == s for p in pairs) for s in data.SPLITS}
    assert counts == {"train": 12, "validation": 2, "test": 2}
    assert len({p.category for p in pairs if p.split == "validation"}) == 2


def test_tiny_category_keeps_a_training_pair():
    pairs = data.split_pairs(_pairs({"1": 1, "2": 2}), 0.5, 0.4, seed=0)
    assert [p.split for p in pairs if p.category == "1"] == ["train"]


@pytest.mark.parametrize("val,test", [(-0.1, 0.1), (1.0, 0.0), (0.6, 0.4)])
def test_bad_fractions_are_rejected(val, test):
    with pytest.raises(ValueError, match="fraction"):
        data.split_pairs(_pairs({"1": 10}), val, test)


def test_manifest_round_trip_reproduces_the_split(clean_root, tmp_path):
    _, pairs, _ = data.load_splits(clean_root, seed=5)
    manifest = tmp_path / "split.csv"
    data.write_manifest(pairs, manifest, clean_root)
    rows = list(csv.DictReader(open(manifest)))
    assert set(rows[0]) == {"image", "mask", "category", "split"}
    assert rows[0]["image"].startswith("Images/")  # relative, so the manifest travels
    _, again, scan = data.load_splits(clean_root, seed=99, manifest=manifest)
    assert scan is None and again == pairs


def test_manifest_with_missing_file_is_rejected(clean_root, tmp_path):
    _, pairs, _ = data.load_splits(clean_root)
    manifest = tmp_path / "split.csv"
    data.write_manifest(pairs, manifest, clean_root)
    (clean_root / "Images" / "1" / "n_1_00.jpg").unlink()
    with pytest.raises(DataError, match="n_1_00.jpg does not exist"):
        data.read_manifest(manifest, clean_root)


@pytest.mark.parametrize(
    ("content", "named"),
    [
        pytest.param(b"image,mask,category,split\nImages/1/caf\xe9.jpg,m,1,train\n",
                     "cannot read the manifest", id="latin-1"),
        pytest.param(b"image,mask,category,split\nImages/1/a\x00.jpg,m.png,1,train\n",
                     "does not exist", id="nul-in-a-path"),
        pytest.param(b"image,mask,category,split\nImages/1/a.jpg\n", "fewer than 4 columns",
                     id="short-row"),
    ],
)  # fmt: skip
def test_a_manifest_that_is_no_run_manifest_is_named(clean_root, tmp_path, content, named):
    # Each ended in a traceback (UnicodeDecodeError, "embedded null byte", a TypeError on None).
    (tmp_path / "split.csv").write_bytes(content)
    with pytest.raises(DataError, match=named) as caught:
        data.read_manifest(tmp_path / "split.csv", clean_root)
    assert "split.csv" in str(caught.value)


# --------------------------------------------------------------------------- DatasetDict


def test_dataset_dict_features_and_lazy_decoding(clean_root):
    from datasets import ClassLabel
    from datasets import Image as ImageFeature

    dataset_dict, _, _ = data.load_splits(clean_root)
    assert set(dataset_dict) == {"train", "validation", "test"}
    train = dataset_dict["train"]
    assert isinstance(train.features["image"], ImageFeature)
    assert isinstance(train.features["label"], ImageFeature)
    assert isinstance(train.features["category"], ClassLabel)
    assert train.features["category"].names == ["1", "2", "3", "4"]
    # Only paths are stored: no pixel bytes in the Arrow table.
    raw = train.data.column("image").to_pylist()[0]
    assert raw["bytes"] is None and raw["path"].endswith(".jpg")
    assert train.data.nbytes < 20_000
    # Decoding happens on access.
    assert train[0]["image"].size == (40, 30)


# --------------------------------------------------------------------------- CLI


def test_check_cli_prints_summary(clean_root, capsys):
    assert check_main([str(clean_root)]) == 0
    out = capsys.readouterr().out
    assert "40 pair(s)" in out and "nail frac" in out and "problems: 0" in out


def test_check_cli_json_and_nonzero_exit_on_problems(clean_root, capsys):
    (clean_root / "Masks" / "2" / "n_2_03.png").unlink()
    (clean_root / "Images" / "3" / "n_3_02.jpg").write_bytes(b"junk")
    assert check_main([str(clean_root), "--json"]) == 1
    summary = json.loads(capsys.readouterr().out)
    paths = {p["path"] for p in summary["problems"]}
    assert paths == {"Images/2/n_2_03.jpg", "Images/3/n_3_02.jpg"}
    assert summary["per_category"]["1"]["train"] > 0
    assert 0 < summary["nail_fraction"]["1"]["mean"] < 1


def test_check_cli_finds_truncated_photo(clean_root, capsys):
    # Header intact, pixel data cut: only a full decode notices.
    path = clean_root / "Images" / "1" / "n_1_01.jpg"
    noise = np.random.default_rng(0).integers(0, 255, (30, 40, 3), dtype=np.uint8)
    Image.fromarray(noise).save(path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    assert data.find_pairs(clean_root).problems == []
    assert check_main([str(clean_root), "--json"]) == 1
    summary = json.loads(capsys.readouterr().out)
    assert [p["path"] for p in summary["problems"]] == ["Images/1/n_1_01.jpg"]


def test_check_cli_unreadable_root_exits_2(tmp_path, capsys):
    assert check_main([str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err
