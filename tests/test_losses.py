"""Tests for nail_segformer.losses."""

import logging
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from nail_segformer.losses import (
    LOSS_NAMES,
    SegmentationLoss,
    compute_class_weights,
    cross_entropy_loss,
    dice_loss,
    focal_loss,
    lovasz_softmax_loss,
    upsample_logits,
)

LOSS_FUNCTIONS = {
    "cross_entropy": cross_entropy_loss,
    "dice": dice_loss,
    "focal": focal_loss,
    "lovasz": lovasz_softmax_loss,
}


def _logits_and_labels(seed=0, shape=(2, 3, 6, 5), ignore_share=0.2):
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(shape, generator=generator)
    labels = torch.randint(0, shape[1], (shape[0], *shape[2:]), generator=generator)
    labels[torch.rand(labels.shape, generator=generator) < ignore_share] = 255
    return logits, labels


def _one_hot_logits(labels, num_classes, scale=50.0):
    return F.one_hot(labels, num_classes).permute(0, 3, 1, 2).float() * scale


def _brute_force_mean_jaccard_loss(predicted, labels, num_classes):
    """Mean over classes present in labels of 1 - |P & G| / |P | G|, by set counting."""
    losses = []
    for c in range(num_classes):
        truth = {i for i, value in enumerate(labels.flatten().tolist()) if value == c}
        guess = {i for i, value in enumerate(predicted.flatten().tolist()) if value == c}
        if truth:
            losses.append(1 - len(truth & guess) / len(truth | guess))
    return sum(losses) / len(losses)


@pytest.mark.parametrize("name", LOSS_FUNCTIONS)
def test_loss_is_finite_scalar_with_gradient(name):
    logits, labels = _logits_and_labels()
    logits.requires_grad_(True)
    loss = LOSS_FUNCTIONS[name](logits, labels)
    loss.backward()
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_sgd_on_logits_decreases_each_named_loss(name):
    torch.manual_seed(0)
    logits, labels = _logits_and_labels(seed=1, shape=(2, 2, 4, 4))
    low_res = torch.nn.Parameter(logits[:, :, ::2, ::2].clone())  # upsampled by the module
    loss_fn = SegmentationLoss(name)
    optimizer = torch.optim.SGD([low_res], lr=1.0)
    losses = []
    for _ in range(10):
        optimizer.zero_grad()
        loss = loss_fn(low_res, labels)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


@pytest.mark.parametrize("loss_fn", [dice_loss, lovasz_softmax_loss])
def test_perfect_logits_give_near_zero_region_loss(loss_fn):
    _, labels = _logits_and_labels(seed=2)
    logits = _one_hot_logits(labels.clamp(max=2), 3)
    assert loss_fn(logits, labels).item() < 1e-6


@pytest.mark.parametrize("name", LOSS_FUNCTIONS)
def test_ignored_pixels_get_zero_gradient(name):
    logits, labels = _logits_and_labels(seed=3)
    logits.requires_grad_(True)
    LOSS_FUNCTIONS[name](logits, labels).backward()
    ignored = (labels == 255).unsqueeze(1).expand_as(logits)
    assert ignored.any()
    assert (logits.grad[ignored] == 0).all()
    assert logits.grad[~ignored].abs().sum() > 0


@pytest.mark.parametrize("name", LOSS_FUNCTIONS)
def test_all_ignored_batch_gives_zero_with_gradient(name):
    logits, _ = _logits_and_labels(seed=4)
    logits.requires_grad_(True)
    loss = LOSS_FUNCTIONS[name](logits, torch.full((2, 6, 5), 255))
    loss.backward()
    assert loss.item() == 0.0
    assert (logits.grad == 0).all()


def test_class_weights_match_torch_weighted_cross_entropy():
    logits, labels = _logits_and_labels(seed=5)
    weights = [0.2, 1.0, 3.0]
    expected = F.cross_entropy(logits, labels, weight=torch.tensor(weights), ignore_index=255)
    weighted = cross_entropy_loss(logits, labels, class_weights=weights)
    assert weighted.item() == pytest.approx(expected.item(), rel=1e-6)
    assert weighted.item() != pytest.approx(cross_entropy_loss(logits, labels).item())


def test_upweighting_a_misclassified_class_raises_cross_entropy():
    labels = torch.tensor([[[0, 0, 1, 1]]])
    logits = _one_hot_logits(torch.tensor([[[0, 0, 1, 0]]]), 2, scale=2.0)  # last nail pixel wrong
    plain = cross_entropy_loss(logits, labels)
    nail_heavy = cross_entropy_loss(logits, labels, class_weights=[1.0, 4.0])
    assert nail_heavy > plain


def test_focal_with_zero_gamma_is_cross_entropy():
    logits, labels = _logits_and_labels(seed=6)
    weights = [0.5, 2.0, 1.0]
    focal = focal_loss(logits, labels, gamma=0.0, class_weights=weights)
    assert focal.item() == pytest.approx(cross_entropy_loss(logits, labels, weights).item())


def test_focal_down_weights_easy_pixels():
    logits, labels = _logits_and_labels(seed=6)
    assert focal_loss(logits, labels, gamma=2.0) < cross_entropy_loss(logits, labels)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lovasz_of_hard_predictions_is_one_minus_iou(seed):
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 3, (1, 4, 4), generator=generator)
    predicted = torch.randint(0, 3, (1, 4, 4), generator=generator)
    loss = lovasz_softmax_loss(_one_hot_logits(predicted, 3), labels)
    assert loss.item() == pytest.approx(
        _brute_force_mean_jaccard_loss(predicted, labels, 3), abs=1e-5
    )


def test_lovasz_is_linear_in_the_error_of_one_pixel():
    # The Lovász extension is linear between hard vertices: halving the confidence of a wrong
    # prediction halves that pixel's contribution.
    labels = torch.tensor([[[0, 1, 1, 1]]])
    hard = lovasz_softmax_loss(_one_hot_logits(torch.tensor([[[0, 1, 1, 0]]]), 2), labels)
    soft_logits = _one_hot_logits(torch.tensor([[[0, 1, 1, 1]]]), 2)
    soft_logits[0, :, 0, 3] = 0.0  # 50/50 on the last pixel
    soft = lovasz_softmax_loss(soft_logits, labels)
    assert soft.item() == pytest.approx(hard.item() / 2, abs=1e-5)


def test_losses_reject_logits_not_at_label_size():
    with pytest.raises(ValueError, match="upsample the logits"):
        dice_loss(torch.zeros(1, 2, 4, 4), torch.zeros(1, 8, 8, dtype=torch.long))


def test_losses_reject_labels_outside_the_classes():
    with pytest.raises(ValueError, match=r"class ids in \[0, 2\)"):
        lovasz_softmax_loss(torch.zeros(1, 2, 1, 2), torch.tensor([[[0, 3]]]))


def test_upsample_logits_is_bilinear_without_corner_alignment():
    logits, _ = _logits_and_labels(seed=7)
    expected = F.interpolate(logits, size=(12, 10), mode="bilinear", align_corners=False)
    assert torch.equal(upsample_logits(logits, (12, 10)), expected)
    assert upsample_logits(logits, (6, 5)) is logits


def test_unknown_loss_name_lists_valid_names():
    with pytest.raises(ValueError, match="unknown loss name 'bce'") as error:
        SegmentationLoss("bce")
    assert all(name in str(error.value) for name in LOSS_NAMES)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "lovasz", "class_weights": [1.0, 2.0]}, "use 'lovasz_ce'"),
        ({"class_weights": [1.0, -1.0]}, "non-negative"),
        ({"dice_weight": -0.5}, "dice_weight"),
    ],
)
def test_bad_loss_arguments_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SegmentationLoss(**kwargs)


def test_wrong_number_of_class_weights_is_rejected():
    logits, labels = _logits_and_labels()
    with pytest.raises(ValueError, match=r"one weight per class \(3\)"):
        SegmentationLoss("ce", class_weights=[1.0, 2.0])(logits, labels)


@pytest.mark.parametrize(
    ("name", "region_loss"), [("dice_ce", dice_loss), ("lovasz_ce", lovasz_softmax_loss)]
)
def test_combined_losses_add_weighted_region_term(name, region_loss):
    logits, labels = _logits_and_labels(seed=8)
    combined = SegmentationLoss(name, dice_weight=0.5)(logits, labels)
    expected = cross_entropy_loss(logits, labels) + 0.5 * region_loss(logits, labels)
    assert combined.item() == pytest.approx(expected.item())


def test_trainer_adapter_upsamples_output_logits():
    logits, _ = _logits_and_labels(seed=9, shape=(2, 2, 4, 4))
    labels = torch.randint(0, 2, (2, 16, 16), generator=torch.Generator().manual_seed(9))
    loss_fn = SegmentationLoss("dice_ce").as_trainer_loss()
    from_namespace = loss_fn(SimpleNamespace(logits=logits), labels, num_items_in_batch=32)
    from_dict = loss_fn({"logits": logits}, labels)
    upsampled = upsample_logits(logits, (16, 16))
    expected = cross_entropy_loss(upsampled, labels) + dice_loss(upsampled, labels)
    assert from_namespace.item() == pytest.approx(expected.item())
    assert from_dict.item() == from_namespace.item()


def test_trainer_adapter_requires_labels():
    with pytest.raises(ValueError, match="remove_unused_columns"):
        SegmentationLoss().as_trainer_loss()(SimpleNamespace(logits=torch.zeros(1, 2, 2, 2)), None)


def test_ce_adapter_matches_segformer_built_in_loss():
    from transformers import SegformerConfig, SegformerForSemanticSegmentation

    torch.manual_seed(0)
    config = SegformerConfig(
        num_encoder_blocks=1,
        depths=[1],
        sr_ratios=[1],
        hidden_sizes=[8],
        num_attention_heads=[1],
        mlp_ratios=[1],
        decoder_hidden_size=8,
        num_labels=2,
        semantic_loss_ignore_index=255,
    )
    model = SegformerForSemanticSegmentation(config)
    pixel_values = torch.randn(2, 3, 32, 32)
    labels = torch.randint(0, 2, (2, 32, 32))
    labels[:, :4] = 255
    outputs = model(pixel_values=pixel_values, labels=labels)
    ours = SegmentationLoss("ce").as_trainer_loss()(outputs, labels)
    assert ours.item() == pytest.approx(outputs.loss.item(), rel=1e-6)


def test_class_weights_from_pixel_counts():
    # Median frequency: shares 0.8 and 0.2, median 0.5.
    assert compute_class_weights([800, 200]) == pytest.approx([0.5 / 0.8, 0.5 / 0.2])


def test_class_weights_give_empty_class_the_largest_weight(caplog):
    with caplog.at_level(logging.WARNING, logger="nail_segformer.losses"):
        weights = compute_class_weights([900, 100, 0])
    assert weights[2] == weights[1] == pytest.approx(0.5 / 0.1)
    assert "[2]" in caplog.text


@pytest.mark.parametrize(
    ("counts", "message"), [([0, 0], "at least one pixel"), ([5, -1], "non-negative")]
)
def test_bad_class_weight_inputs_are_rejected(counts, message):
    with pytest.raises(ValueError, match=message):
        compute_class_weights(counts)
