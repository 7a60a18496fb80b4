"""Training/evaluation transforms: label values, alignment, padding, processor parity."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage

from nail_segformer import data
from nail_segformer.data import transforms


def _write_pair(root, stem, image_array, mask_array):
    (root / "Images").mkdir(parents=True, exist_ok=True)
    (root / "Masks").mkdir(parents=True, exist_ok=True)
    Image.fromarray(image_array).save(root / "Images" / f"{stem}.png")
    Image.fromarray(mask_array).save(root / "Masks" / f"{stem}.png")
    return {"path": str(root / "Images" / f"{stem}.png")}, {
        "path": str(root / "Masks" / f"{stem}.png")
    }


def _asymmetric(size=64):
    """A photo whose red channel encodes the mask: a nail block only in the top-left corner."""
    mask = np.zeros((size, size), dtype=np.uint8)
    mask[4:20, 6:16] = 255
    image = np.zeros((size, size, 3), dtype=np.uint8)
    image[..., 0] = mask
    image[..., 1] = 80
    return image, mask


@pytest.fixture
def processor():
    return transforms.load_image_processor(None, size=64)


def test_processor_never_reduces_labels(tmp_path):
    saved = transforms.load_image_processor(None, size=64)
    saved.do_reduce_labels = True  # as the ADE20k checkpoints save it
    saved.save_pretrained(tmp_path)
    loaded = transforms.load_image_processor(tmp_path)
    assert loaded.do_reduce_labels is False
    assert transforms.processor_size(loaded) == (64, 64)


@pytest.mark.parametrize("size", [0, 33, 100])
def test_processor_size_must_be_multiple_of_32(size):
    with pytest.raises(ValueError, match="multiple of 32"):
        transforms.load_image_processor(None, size=size)


def test_train_labels_stay_in_zero_one_ignore(tmp_path, processor):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (90, 120, 3), dtype=np.uint8)
    mask = (rng.random((90, 120)) > 0.7).astype(np.uint8) * 255
    image_value, mask_value = _write_pair(tmp_path, "a", image, mask)
    augment = transforms.build_train_transforms(64, 64, rotate_p=1.0, rotate_limit=30)
    transform = transforms.SegmentationTransform(processor, augment)
    seen = set()
    for _ in range(20):
        out = transform({"image": [image_value], "label": [mask_value]})
        labels = out["labels"][0]
        assert labels.dtype == np.int64 and labels.shape == (64, 64)
        seen |= set(np.unique(labels).tolist())
    assert seen <= {0, 1, 255}
    assert {0, 1, 255} <= seen  # rotation fills borders with the ignore index, not background


def test_image_and_mask_stay_aligned_under_augmentation(tmp_path, processor):
    image, mask = _asymmetric(96)
    image_value, mask_value = _write_pair(tmp_path, "a", image, mask)
    augment = transforms.build_train_transforms(
        64, 64, hflip=1.0, rotate_p=1.0, color_p=0.0, blur_p=0.0, compression_p=0.0, seed=0
    )
    transform = transforms.SegmentationTransform(processor, augment)
    torch.manual_seed(0)
    mean, std = processor.image_mean[0], processor.image_std[0]
    checked = 0
    for _ in range(10):
        out = transform({"image": [image_value], "label": [mask_value]})
        red = out["pixel_values"][0][0] * std + mean  # back to [0, 1]
        labels = out["labels"][0]
        # Antialiased resizing blends the photo's edge pixels but not the mask's: compare the
        # bulk, one pixel in from the edges.
        nail = ndimage.binary_erosion(labels == 1)
        background = ndimage.binary_erosion(labels == 0)
        if nail.sum() < 8:  # a crop that (nearly) misses the block says nothing
            continue
        checked += 1
        assert np.mean(red[nail] > 0.5) > 0.9
        assert np.mean(red[background] > 0.5) < 0.02
    assert checked >= 3


def test_horizontal_flip_moves_photo_and_mask_together(tmp_path, processor):
    image, mask = _asymmetric(64)
    image_value, mask_value = _write_pair(tmp_path, "a", image, mask)
    augment = transforms.build_train_transforms(
        64,
        64,
        scale=(1.0, 1.0),
        hflip=1.0,
        rotate_p=0.0,
        color_p=0.0,
        blur_p=0.0,
        compression_p=0.0,
    )
    out = transforms.SegmentationTransform(processor, augment)(
        {"image": [image_value], "label": [mask_value]}
    )
    labels = out["labels"][0]
    assert labels[:, :32].sum() == 0 and labels[:, 32:].sum() > 0  # block moved to the right
    red = out["pixel_values"][0][0]
    assert red[labels == 1].mean() > red[labels == 0].mean()


def test_eval_transform_equals_saved_processor_at_inference(tmp_path, processor):
    """What evaluation measures is what `pipeline`/`AutoImageProcessor` do with the saved files."""
    from transformers import AutoImageProcessor

    rng = np.random.default_rng(1)
    image = rng.integers(0, 255, (75, 110, 3), dtype=np.uint8)
    mask = np.zeros((75, 110), dtype=np.uint8)
    image_value, mask_value = _write_pair(tmp_path, "a", image, mask)
    processor.save_pretrained(tmp_path / "model")
    inference = AutoImageProcessor.from_pretrained(tmp_path / "model")
    expected = inference(images=Image.open(image_value["path"]).convert("RGB"), return_tensors="np")
    out = transforms.SegmentationTransform(processor, None)(
        {"image": [image_value], "label": [mask_value]}
    )
    np.testing.assert_array_equal(out["pixel_values"][0], expected["pixel_values"][0])


def test_eval_labels_are_resized_with_nearest(tmp_path, processor):
    image, mask = _asymmetric(128)
    image_value, mask_value = _write_pair(tmp_path, "a", image, mask)
    out = transforms.SegmentationTransform(processor, None)(
        {"image": [image_value], "label": [mask_value]}
    )
    labels = out["labels"][0]
    assert set(np.unique(labels).tolist()) == {0, 1}
    expected = np.asarray(Image.fromarray(mask // 255).resize((64, 64), Image.NEAREST))
    np.testing.assert_array_equal(labels, expected)


def test_transform_error_names_the_broken_file(tmp_path, processor):
    image, mask = _asymmetric(64)
    image_value, mask_value = _write_pair(tmp_path, "a", image, mask)
    with open(image_value["path"], "wb") as f:
        f.write(b"broken")
    with pytest.raises(data.ImageReadError, match="a.png"):
        transforms.SegmentationTransform(processor, None)(
            {"image": [image_value], "label": [mask_value]}
        )


def test_attach_transforms_on_dataset_dict(tmp_path, processor):
    for i in range(6):
        image, mask = _asymmetric(64)
        _write_pair(tmp_path, f"p{i}", image, mask)
    dataset_dict, _, _ = data.load_splits(tmp_path, 0.2, 0.2, seed=0)
    augment = transforms.build_train_transforms(64, 64)
    ready = transforms.attach_transforms(dataset_dict, processor, augment)
    train_item = ready["train"][0]
    assert train_item["pixel_values"].shape == (3, 64, 64)
    assert train_item["labels"].shape == (64, 64)
    assert ready["validation"][0]["pixel_values"].shape == (3, 64, 64)
    assert ready["train"]._format_kwargs["transform"].augment is augment
    assert ready["validation"]._format_kwargs["transform"].augment is None
    # The source DatasetDict is left as it was.
    assert dataset_dict["train"].features["image"].decode is True


def test_augmentation_follows_torch_global_seed(tmp_path, processor):
    """Resumed runs restore torch's RNG state; augmentation must follow it and nothing else."""
    rng = np.random.default_rng(0)
    image_value, mask_value = _write_pair(
        tmp_path,
        "a",
        rng.integers(0, 255, (80, 100, 3), dtype=np.uint8),
        np.zeros((80, 100), np.uint8),
    )
    batch = {"image": [image_value] * 3, "label": [mask_value] * 3}

    def run(seed):
        torch.manual_seed(seed)
        transform = transforms.SegmentationTransform(
            processor, transforms.build_train_transforms(64, 64)
        )
        return np.stack(transform(batch)["pixel_values"])

    first, again, other = run(1), run(1), run(2)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    assert not np.array_equal(first[0], first[1])  # each sample gets its own draw


def _nail_corner_pair(tmp_path, size=128):
    """A photo with one small nail block in a corner: patches drawn anywhere mostly miss it."""
    mask = np.zeros((size, size), dtype=np.uint8)
    mask[4:12, 6:14] = 255
    image = np.zeros((size, size, 3), dtype=np.uint8)
    image[..., 0] = mask
    image[..., 1] = 80
    return _write_pair(tmp_path, "corner", image, mask)


@pytest.mark.parametrize("nail_crop_p", [0.0, 1.0])
def test_training_patches_have_the_crop_size(tmp_path, processor, nail_crop_p):
    image_value, mask_value = _nail_corner_pair(tmp_path)
    augment = transforms.build_train_transforms(
        64, 64, scale=(1.0, 1.0), crop_size=32, nail_crop_p=nail_crop_p, rotate_p=0.0
    )
    transform = transforms.SegmentationTransform(processor, augment, resize=False)
    torch.manual_seed(0)
    out = transform({"image": [image_value] * 4, "label": [mask_value] * 4})
    for pixels, labels in zip(out["pixel_values"], out["labels"], strict=True):
        assert pixels.shape == (3, 32, 32)
        assert labels.shape == (32, 32)
        assert set(np.unique(labels).tolist()) <= {0, 1}


def test_nail_patches_find_the_nail(tmp_path, processor):
    """With nail_crop_p=1 every patch holds nail pixels; drawn anywhere, most patches hold none."""
    image_value, mask_value = _nail_corner_pair(tmp_path, size=64)

    def share_with_nail(nail_crop_p):
        augment = transforms.build_train_transforms(
            64,
            64,
            scale=(1.0, 1.0),
            hflip=0.0,
            rotate_p=0.0,
            color_p=0.0,
            blur_p=0.0,
            compression_p=0.0,
            crop_size=32,
            nail_crop_p=nail_crop_p,
        )
        transform = transforms.SegmentationTransform(processor, augment, resize=False)
        torch.manual_seed(0)
        out = transform({"image": [image_value] * 40, "label": [mask_value] * 40})
        hits = [(labels == 1).any() for labels in out["labels"]]
        # The photo travels with its mask: nail pixels are red in the patch too.
        for pixels, labels in zip(out["pixel_values"], out["labels"], strict=True):
            red = pixels[0] * processor.image_std[0] + processor.image_mean[0]
            if (labels == 1).sum() >= 4:
                assert np.median(red[labels == 1]) > 0.5
        return float(np.mean(hits))

    assert share_with_nail(1.0) == 1.0
    assert share_with_nail(0.0) < 0.6


@pytest.mark.parametrize("crop_size", [0, 65])
def test_crop_size_must_fit_the_input(crop_size):
    with pytest.raises(ValueError, match="crop_size"):
        transforms.build_train_transforms(64, 64, crop_size=crop_size)


def test_training_without_resize_needs_an_augment(processor):
    with pytest.raises(ValueError, match="resize=False"):
        transforms.SegmentationTransform(processor, None, resize=False)


# --------------------------------------------------------------------------- phone photos


_PLAIN = {"hflip": 0.0, "rotate_p": 0.0, "color_p": 0.0, "blur_p": 0.0, "compression_p": 0.0}


def _phone_photo(tmp_path, seen_size, orientation=1, nail_box=None, seed=0):
    """A JPEG seen at ``seen_size`` (stored rotated when ``orientation`` is 6), fine texture,
    and its 0/255 PNG mask at the seen orientation; returns (image value, mask value)."""
    width, height = seen_size
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    # Stripes 2-3 px apart and noise: detail that a resize without antialiasing folds into
    # coarse false patterns.
    texture = (
        127 + 90 * np.sin(xx * 2.6 + yy * 0.7)[..., None] + rng.normal(0, 20, (height, width, 3))
    )
    pixels = np.clip(texture, 0, 255).astype(np.uint8)
    mask = np.zeros((height, width), np.uint8)
    if nail_box is not None:
        left, top, right, bottom = nail_box
        mask[top:bottom, left:right] = 255
        pixels[top:bottom, left:right] = (230, 40, 60)
    photo = Image.fromarray(pixels)
    exif = Image.Exif()
    if orientation == 6:
        photo = photo.transpose(Image.Transpose.ROTATE_90)
        exif[0x0112] = 6
    (tmp_path / "Images").mkdir(parents=True, exist_ok=True)
    (tmp_path / "Masks").mkdir(parents=True, exist_ok=True)
    photo.save(tmp_path / "Images" / "p.jpg", quality=95, exif=exif)
    Image.fromarray(mask).save(tmp_path / "Masks" / "p.png")
    return {"path": str(tmp_path / "Images" / "p.jpg")}, {"path": str(tmp_path / "Masks" / "p.png")}


def _levels(pixel_values, processor):
    """Normalised pixel values back to 8-bit levels."""
    std = np.asarray(processor.image_std).reshape(3, 1, 1)
    mean = np.asarray(processor.image_mean).reshape(3, 1, 1)
    return (np.asarray(pixel_values) * std + mean) * 255


def test_reduced_decode_keeps_the_size_asked_and_rotates_after(tmp_path):
    # Stored 800x600 with EXIF 6: seen 600x800. Asking for 150x200 (as seen) lets libjpeg decode
    # at 1/4 scale; the marker drawn at the seen top-left must stay there.
    image_value, _ = _phone_photo(tmp_path, (600, 800), orientation=6, nail_box=(0, 0, 120, 160))
    full = data.load_image(image_value["path"])
    reduced = data.load_image(image_value["path"], reduce_to=(150, 200))
    assert full.size == (600, 800)
    assert reduced.size == (150, 200)
    marker = np.asarray(reduced)[:30, :20].mean(axis=(0, 1))
    assert marker[0] > 180 and marker[1] < 100  # the red marker, top-left as seen
    expected = np.asarray(full.resize(reduced.size, Image.Resampling.BOX), dtype=np.float64)
    assert np.abs(np.asarray(reduced) - expected).mean() < 6  # the same picture, DCT-scaled


def test_working_pair_shrinks_each_side_and_never_enlarges(tmp_path):
    image_value, mask_value = _phone_photo(tmp_path, (400, 240), nail_box=(10, 10, 60, 50))
    image, labels = transforms.load_working_pair(image_value["path"], mask_value["path"], 300)
    assert image.shape == (240, 300, 3) and labels.shape == (240, 300)  # 400 -> 300; 240 kept
    assert set(np.unique(labels).tolist()) == {0, 1}
    small, small_labels = transforms.load_working_pair(
        image_value["path"], mask_value["path"], 1000
    )
    assert small.shape == (240, 400, 3) and small_labels.shape == (240, 400)


@pytest.mark.parametrize("orientation", [1, 6])
def test_working_pair_opens_each_file_once(tmp_path, monkeypatch, orientation):
    """The photo's full size (for the mask check) comes from the opening that decodes it."""
    from nail_segformer.data import files

    image_value, mask_value = _phone_photo(
        tmp_path, (800, 600), orientation=orientation, nail_box=(10, 10, 60, 50)
    )
    opened = []
    real_open = files._open_image

    def counting_open(path, what):
        opened.append(Path(path).name)
        return real_open(path, what)

    monkeypatch.setattr(files, "_open_image", counting_open)
    image, labels = transforms.load_working_pair(image_value["path"], mask_value["path"], 700)
    assert sorted(opened) == ["p.jpg", "p.png"]
    assert image.shape[:2] == labels.shape == (600, 700)  # seen 800x600 (after EXIF): 800 -> 700
    opened.clear()
    reduced, size = data.load_image(image_value["path"], (150, 150), return_size=True)
    assert size == (800, 600) and reduced.size == (200, 150) and opened == ["p.jpg"]


@pytest.mark.parametrize("orientation", [1, 6])
@pytest.mark.parametrize("working", ["full photo", "working size"])
def test_plain_training_sample_of_a_large_photo_matches_the_evaluation_input(
    tmp_path, processor, orientation, working
):
    """Without augmentation, training shows the pixels evaluation shows (antialiased, whole).

    Both ways the training transform can read a photo are checked: shrunk to the working size
    first (the default, and what the cache holds), and at full size (the crop's own filter).
    """
    image_value, mask_value = _phone_photo(
        tmp_path, (1200, 1600), orientation=orientation, nail_box=(200, 300, 500, 700)
    )
    batch = {"image": [image_value], "label": [mask_value]}
    augment = transforms.build_train_transforms(64, 64, scale=(1.0, 1.0), **_PLAIN)
    size = transforms.working_size(64, 0.3) if working == "working size" else None
    train = transforms.SegmentationTransform(processor, augment, resize=False, working_size=size)
    evaluation = transforms.SegmentationTransform(processor, None)
    train_out, eval_out = train(batch), evaluation(batch)
    difference = np.abs(
        _levels(train_out["pixel_values"][0], processor)
        - _levels(eval_out["pixel_values"][0], processor)
    )
    assert difference.mean() < 1.5  # 8-bit levels; a resize that aliases is off by ~30 here
    labels_agree = np.mean(train_out["labels"][0] == eval_out["labels"][0])
    assert labels_agree > 0.98


@pytest.mark.parametrize(
    "seen_size",
    [
        pytest.param((96, 54), id="smaller-than-the-working-size"),
        pytest.param((640, 360), id="shrunk-to-the-working-size"),
    ],
)
def test_wide_photo_keeps_its_edges_and_squashes_like_evaluation(tmp_path, processor, seen_size):
    # A 16:9 photo with a nail touching its left edge, trained at the scale evaluation sees
    # (scale 1): the sample is the whole photo squashed to the square, nail included. The small
    # photo is not resized before the crop (nothing is enlarged), so the crop itself must keep
    # the edges; the large one is squashed to the working size first.
    width, height = seen_size
    nail = (0, height * 5 // 12, width // 16, height * 7 // 12)
    image_value, mask_value = _phone_photo(tmp_path, seen_size, nail_box=nail)
    batch = {"image": [image_value], "label": [mask_value]}
    augment = transforms.build_train_transforms(64, 64, scale=(1.0, 1.0), **_PLAIN)
    train = transforms.SegmentationTransform(
        processor, augment, resize=False, working_size=transforms.working_size(64, 0.3)
    )
    train_labels = train(batch)["labels"][0]
    eval_labels = transforms.SegmentationTransform(processor, None)(batch)["labels"][0]
    assert train_labels[:, :2].any()  # the nail at the edge is in the training sample
    assert np.mean(train_labels == eval_labels) > 0.99


def test_squashed_crop_measures_area_and_aspect_in_the_square(tmp_path):
    from nail_segformer.data._squash_crop import SquashedRandomResizedCrop

    crop = SquashedRandomResizedCrop(size=(32, 32), scale=(0.3, 1.0))
    crop.set_random_seed(0)
    height, width = 360, 640
    for _ in range(200):
        left, top, right, bottom = crop.get_params_dependent_on_data(
            {"shape": (height, width)}, {}
        )["crop_coords"]
        fw, fh = (right - left) / width, (bottom - top) / height
        assert 0.3 - 0.01 <= fw * fh <= 1.0
        assert 3 / 4 - 0.02 <= fw / fh <= 4 / 3 + 0.02
        assert 0 <= left < right <= width and 0 <= top < bottom <= height


def test_training_normalisation_is_the_processors_to_the_bit(tmp_path):
    # The training path looks each 8-bit level up instead of calling the processor: the values
    # must be exactly the processor's, for the default and for a custom mean/std.
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (32, 48, 3), dtype=np.uint8) for _ in range(3)]
    masks = [rng.integers(0, 2, (32, 48), dtype=np.uint8) for _ in range(3)]
    custom = transforms.load_image_processor(None, size=64)
    custom.image_mean, custom.image_std = [0.5, 0.4, 0.3], [0.2, 0.25, 0.3]
    for proc in (transforms.load_image_processor(None, size=64), custom):
        fast = transforms.SegmentationTransform(proc, lambda **kw: kw, resize=False)
        ours = fast.encode(images, masks)
        reference = proc(
            images=images,
            segmentation_maps=masks,
            do_reduce_labels=False,
            do_resize=False,
            return_tensors="np",
        )
        for got, want in zip(ours["pixel_values"], reference["pixel_values"], strict=True):
            assert got.dtype == want.dtype == np.float32
            np.testing.assert_array_equal(got, want)
        for got, want in zip(ours["labels"], reference["labels"], strict=True):
            assert got.dtype == np.int64
            np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("photometric", ["true", "false"])
def test_photometric_augmentation_flag_reaches_the_pipeline(
    synthetic_root, tmp_path, monkeypatch, photometric
):
    from nail_segformer.data import transforms as transforms_lib
    from nail_segformer.train import parse_args
    from nail_segformer.train.build import build_model_and_processor, build_trainer, load_data

    built = {}
    real = transforms_lib.build_train_transforms

    def spy(*args, **kwargs):
        built.update(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(transforms_lib, "build_train_transforms", spy)
    argv = ["--data_root", str(synthetic_root), "--output_dir", str(tmp_path), "--use_cpu", "true",
            "--from_scratch_preset", "tiny", "--image_size", "64", "--resize_cache", "false",
            "--photometric_augmentation", photometric]  # fmt: skip
    data_args, model_args, training_args = parse_args(argv)
    dataset_dict, _ = load_data(data_args, str(tmp_path), resuming=False)
    model, processor = build_model_and_processor(model_args, data_args, seed=0)
    build_trainer(model, processor, dataset_dict, data_args, model_args, training_args)
    probabilities = [built.get(k) for k in ("color_p", "blur_p", "compression_p")]
    assert probabilities == ([None] * 3 if photometric == "true" else [0.0] * 3)


@pytest.mark.parametrize(
    "size", [(5, 1), (4, 3), (640, 3)], ids=["1-tall", "3-tall", "3-tall-wide"]
)
def test_photos_one_or_three_pixels_tall_are_not_taken_for_channels(tmp_path, processor, size):
    """transformers guesses the channel axis of an array from its shape, and a photo 1 or 3
    pixels tall looks channels-first: it raised (1 tall) or was read transposed (3 tall)."""
    from nail_segformer.data.cache import _eval_example

    width, height = size
    pixels = np.random.default_rng(0).integers(0, 255, (height, width, 3), dtype=np.uint8)
    mask = np.zeros((height, width), np.uint8)
    mask[:, : width // 2] = 255
    Image.fromarray(pixels).save(tmp_path / "p.png")
    Image.fromarray(mask).save(tmp_path / "m.png")
    row = {"image": {"path": str(tmp_path / "p.png"), "bytes": None},
           "label": {"path": str(tmp_path / "m.png"), "bytes": None}}  # fmt: skip
    resized = np.asarray(Image.fromarray(pixels).resize((64, 64), Image.Resampling.BILINEAR))
    out = transforms.SegmentationTransform(processor)({k: [v] for k, v in row.items()})
    np.testing.assert_allclose(
        _levels(out["pixel_values"][0], processor), resized.transpose(2, 0, 1), atol=0.5
    )
    cached = _eval_example(row, processor, None, False)
    photo, _ = transforms.decode_cached(cached["image_encoded"], cached["labels_encoded"])
    np.testing.assert_array_equal(photo, resized)
