from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from infinity_train.tokenizer.discriminator import LeCam, discriminator_objective, generator_objective
from infinity_train.tokenizer.losses import TokenizerLoss
from infinity_train.tokenizer.perceptual import PerceptualDistance, _vgg16_features

from tokenizer_helpers import tiny_tokenizer

NO_GAN = {"perceptual": 0.0, "gan": 0.0}
SMALL_GAN = {"perceptual": 0.0, "gan": 0.3, "gan_start_step": 5, "disc_channels": 8, "disc_layers": 2}


@pytest.fixture(scope="module")
def vgg_file(tmp_path_factory) -> str:
    """Random VGG16 feature weights in torchvision's key layout (no download)."""
    torch.manual_seed(0)
    state = {f"features.{k}": v for k, v in _vgg16_features().state_dict().items()}
    state["classifier.0.weight"] = torch.zeros(2, 2)  # full torchvision files carry these: ignored
    path = tmp_path_factory.mktemp("vgg") / "vgg16.safetensors"
    save_file(state, str(path))
    return str(path)


def _images(seed: int, size: int = 64) -> torch.Tensor:
    return torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_perceptual_weight_without_a_file_fails_at_construction():
    with pytest.raises(ValueError, match="no perceptual_weights file"):
        TokenizerLoss()
    TokenizerLoss(**NO_GAN)  # weight 0 needs no file


def test_perceptual_distance_is_zero_on_equal_images_and_differentiable(vgg_file):
    distance = PerceptualDistance(vgg_file)
    image = _images(0, 32)
    assert distance(image, image).item() == pytest.approx(0.0, abs=1e-6)
    recon = _images(1, 32).requires_grad_(True)
    value = distance(recon, image)
    value.backward()
    assert value.item() > 0 and recon.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in distance.parameters())
    assert not distance.train().training  # frozen network stays in eval mode


def test_perceptual_accepts_lpips_layout_and_rejects_other_files(tmp_path, vgg_file):
    from safetensors.torch import load_file

    vgg = load_file(vgg_file)
    lpips = {k.replace("features.", "net.slice1.", 1): v for k, v in vgg.items() if k.startswith("features.")}
    lpips |= {f"lin{i}.model.1.weight": torch.full((1, c, 1, 1), 0.5) for i, c in enumerate((64, 128, 256, 512, 512))}
    torch.save(lpips, tmp_path / "lpips.pth")
    distance = PerceptualDistance(tmp_path / "lpips.pth")
    assert torch.equal(distance.lin2.model[1].weight, torch.full((1, 256, 1, 1), 0.5))
    assert torch.equal(distance.features[28].weight, vgg["features.28.weight"])
    torch.save({"fc.weight": torch.zeros(3, 3)}, tmp_path / "resnet.pth")
    with pytest.raises(ValueError, match="do not fit a VGG16"):
        PerceptualDistance(tmp_path / "resnet.pth")


def test_quantizer_terms_enter_with_their_weights():
    tokenizer = tiny_tokenizer(16)
    image = _images(0)
    out = tokenizer(image)
    loss = TokenizerLoss(**NO_GAN)
    terms = loss.generator_loss(image, out, step=0)
    commitment, entropy = out.quantizer.commitment, out.quantizer.entropy
    expected = F.l1_loss(out.reconstruction, image) + 4.0 * (0.25 * commitment + 0.1 * entropy)
    assert torch.allclose(terms.total, expected)
    assert torch.allclose(terms.terms["commitment"], commitment) and commitment > 0
    terms.total.backward()
    assert tokenizer.encoder.conv_in.conv.weight.grad.abs().sum() > 0


def test_commitment_is_mse_between_normalized_residual_and_code():
    from infinity_train.tokenizer.quantizer import bsq, commitment_loss

    z_in = torch.randn(2, 16, 3, 3, requires_grad=True)
    codes, _, z = bsq(z_in)
    value = commitment_loss(z, codes)
    assert torch.allclose(value, ((z - codes.detach()) ** 2).mean())
    value.backward()
    assert z_in.grad.abs().sum() > 0


def test_gan_terms_start_after_warm_up():
    tokenizer = tiny_tokenizer(16)
    image = _images(0)
    loss = TokenizerLoss(**SMALL_GAN)
    out = tokenizer(image)
    before = loss.generator_loss(image, out, step=4)
    assert "gan" not in before.terms and not loss.gan_active(4)
    disc_before = loss.discriminator_loss(image, out.reconstruction, step=4)
    assert disc_before.total.item() == 0.0 and not disc_before.total.requires_grad
    after = loss.generator_loss(image, out, step=5)
    assert "gan" in after.terms and loss.gan_active(5)
    assert not torch.allclose(after.total, before.total)
    after.total.backward()
    assert tokenizer.decoder.conv_out.conv.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("kind", ["hinge", "non_saturating"])
def test_discriminator_loss_trains_the_discriminator_with_finite_lecam(kind):
    tokenizer = tiny_tokenizer(16)
    image = _images(0)
    loss = TokenizerLoss(**SMALL_GAN, gan_kind=kind)
    recon = tokenizer(image).reconstruction
    for _ in range(2):
        terms = loss.discriminator_loss(image, recon, step=10)
    assert torch.isfinite(terms.total) and torch.isfinite(terms.terms["lecam"])
    assert bool(loss.lecam.initialized)
    terms.total.backward()
    assert loss.discriminator.layers[0].weight.grad.abs().sum() > 0
    assert tokenizer.encoder.conv_in.conv.weight.grad is None  # reconstruction is detached


def test_gan_objectives_on_known_logits():
    real, fake = torch.full((4,), 2.0), torch.full((4,), -2.0)
    assert discriminator_objective(real, fake, "hinge").item() == 0.0
    assert discriminator_objective(real, fake, "non_saturating").item() == pytest.approx(2 * math.log1p(math.exp(-2)))
    assert generator_objective(torch.ones(3), "hinge").item() == -1.0
    assert generator_objective(torch.zeros(3), "non_saturating").item() == pytest.approx(math.log(2))
    with pytest.raises(ValueError, match="unknown GAN loss"):
        TokenizerLoss(**{**SMALL_GAN, "gan_kind": "wasserstein"})


def test_lecam_penalizes_logits_beyond_the_other_sides_average():
    lecam = LeCam(decay=0.5).train()
    # first call sets the EMAs to (real 2, fake -2): relu(2 - -2)^2 + relu(2 - -2)^2
    assert lecam(torch.full((4,), 2.0), torch.full((4,), -2.0)).item() == pytest.approx(32.0)
    # EMAs move halfway to (0, 0): real 1, fake -1 -> relu(0 - -1)^2 + relu(1 - 0)^2
    assert lecam(torch.zeros(4), torch.zeros(4)).item() == pytest.approx(2.0)
    lecam.eval()
    lecam(torch.full((4,), 9.0), torch.full((4,), 9.0))
    assert lecam.ema_real.item() == pytest.approx(1.0)  # no update outside training


def test_reg_variant_adds_losses_on_early_scale_partial_reconstructions():
    tokenizer = tiny_tokenizer(16, num_partial_scales=1).train()
    image = _images(0)
    out = tokenizer(image, generator=torch.Generator().manual_seed(0))
    (partial,) = out.partial_reconstructions.values()
    with_reg = TokenizerLoss(**NO_GAN, reg=True).generator_loss(image, out, step=0)
    without = TokenizerLoss(**NO_GAN).generator_loss(image, out, step=0)
    assert torch.allclose(with_reg.terms["reg_partial_l1"], F.l1_loss(partial, image))
    assert torch.allclose(with_reg.total - without.total, with_reg.terms["reg_partial_l1"])
