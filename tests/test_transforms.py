"""Training/evaluation transforms: label values, alignment, padding, processor parity."""

import numpy as np
import pytest
import torch
from PIL import Image

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
        nail, background = labels == 1, labels == 0
        if nail.sum() < 30:  # a crop that (nearly) misses the block says nothing
            continue
        checked += 1
        # Interpolation blurs the photo's edges but not the mask's: compare the bulk.
        assert np.mean(red[nail] > 0.5) > 0.75
        assert np.mean(red[background] > 0.5) < 0.05
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
