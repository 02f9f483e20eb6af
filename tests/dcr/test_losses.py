"""DCR losses: centre update before the loss, trunk loss, coupled-mappings loss, the registered head."""

from __future__ import annotations

import facerec
import torch
import torch.nn.functional as F

from facerec_dcr.losses import CenterBuffer, CMLoss, TrunkLoss


def _reference_update(centers, emb, labels, alpha):
    c = centers.clone()
    for cls in labels.unique():  # reference loop, small on purpose
        m = labels == cls
        c[cls] = c[cls] + alpha * (emb[m] - c[cls]).mean(0)
    return c


def test_center_buffer_moves_present_classes_only():
    torch.manual_seed(0)
    buf = CenterBuffer(6, 4, update_factor=0.6)
    before = buf.centers.clone()
    emb = torch.randn(7, 4)
    labels = torch.tensor([0, 2, 2, 5, 0, 0, 2])
    buf.update(emb, labels)
    torch.testing.assert_close(buf.centers, _reference_update(before, emb, labels, 0.6))
    assert torch.equal(buf.centers[[1, 3, 4]], before[[1, 3, 4]])


def test_center_buffer_frozen_in_eval():
    buf = CenterBuffer(3, 4).eval()
    before = buf.centers.clone()
    buf(torch.randn(2, 4), torch.tensor([0, 1]))
    assert torch.equal(buf.centers, before)


def test_trunk_loss_uses_updated_centres():
    torch.manual_seed(1)
    loss = TrunkLoss(5, 8, center_factor=0.008)
    before = loss.center.centers.clone()
    emb, logits = torch.randn(6, 8), torch.randn(6, 5)
    labels = torch.tensor([0, 1, 1, 4, 4, 4])
    out = loss(emb, logits, labels)
    updated = _reference_update(before, emb, labels, 0.6)
    expect = F.cross_entropy(logits, labels) + 0.008 * F.mse_loss(emb, updated[labels])
    torch.testing.assert_close(out["loss"], expect)
    assert list(loss.state_dict()) == ["center.centers"]  # the original criterion key


def test_cm_loss_formula_and_gradients_into_both_sides():
    torch.manual_seed(2)
    n_br, labels = 5, torch.tensor([0, 1, 2, 3])
    crit = CMLoss(
        4, n_br, pairs=[(0, k) for k in range(1, n_br)], embedding_size=8, center_factor=0.008, dist_factor=0.008
    )
    before = [c.centers.clone() for c in crit.centers]
    emb = {b: torch.randn(4, 8, requires_grad=True) for b in range(n_br)}
    logits = {b: torch.randn(4, 4) for b in range(n_br)}
    out = crit(emb, logits, labels)
    ce = sum(F.cross_entropy(logits[b], labels) for b in range(n_br)) / n_br
    cen = (
        sum(F.mse_loss(emb[b], _reference_update(before[b], emb[b].detach(), labels, 0.6)[labels]) for b in range(n_br))
        / n_br
    )
    cpl = sum(F.mse_loss(emb[0], emb[k]) for k in range(1, n_br))
    torch.testing.assert_close(out["loss"], ce + 0.008 * cen + 0.008 * cpl)
    out["loss"].backward()
    # gradient of the coupling term reaches the HR embedding (not only the LR ones)
    grad_no_coupling = torch.autograd.grad(
        (0.008 * F.mse_loss(emb[0], _reference_update(before[0], emb[0].detach(), labels, 0.6)[labels]) / n_br), emb[0]
    )[0]
    assert not torch.allclose(emb[0].grad, grad_no_coupling)
    assert sorted(crit.state_dict()) == [f"centers.{i}.centers" for i in range(n_br)]


def test_registered_head_trains_any_backbone():
    head = facerec.create("head", "dcr-center", embedding_size=8, num_classes=3)
    out = head(torch.randn(4, 8, requires_grad=True), torch.tensor([0, 1, 2, 1]))
    assert out.logits.shape == (4, 3) and out.loss.requires_grad and set(out.extras) == {"ce", "center"}
