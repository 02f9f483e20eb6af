"""Parity with the original DCR code (gyfastas/CS7319E1G16): fixtures dcr.dcrtrunk, dcr.dcrtrunk_raw,
dcr.newdcrtrunk, loaded through the released-checkpoint path (the train.py container)."""

from __future__ import annotations

import pytest
import torch
from facerec.testing import load_fixture

from facerec_dcr.model import DCR, DCRPaper


@pytest.fixture(autouse=True)
def _strict_float32():
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.use_deterministic_algorithms(True)
    yield
    torch.use_deterministic_algorithms(False)


def _run(name, model, parity_dir, save_original, load_into, ddp: bool) -> None:
    fixture = load_fixture(name, parity_dir)
    load_into(model, save_original(fixture.state_dict(), ddp=ddp))
    model.eval()
    x = fixture.inputs()["x"]
    with torch.no_grad():
        out = model.forward_original(x, trunk_only=True)
        fixture.check("trunk_embedding", out["trunk_embeddings"])
        fixture.check("trunk_logits", out["trunk_logits"])
        for idx in range(5):
            out = model.forward_original(x, idx=idx)
            assert out["trunk_logits"] is None
            fixture.check(f"branch{idx}_embedding", out["branch_embeddings"])
            fixture.check(f"branch{idx}_logits", out["branch_logits"])
        fixture.check("trunk_embedding", model(x))  # the Backbone contract: forward = trunk embedding


def test_parity_dcr_dcrtrunk(parity_dir, save_original, load_into):
    _run("dcr.dcrtrunk", DCR(num_classes=16), parity_dir, save_original, load_into, ddp=True)


def test_parity_dcr_dcrtrunk_raw(parity_dir, save_original, load_into):
    _run(
        "dcr.dcrtrunk_raw",
        DCR(num_classes=16, normalized_embeddings=False),
        parity_dir,
        save_original,
        load_into,
        ddp=False,
    )


def test_parity_dcr_newdcrtrunk(parity_dir, save_original, load_into):
    _run("dcr.newdcrtrunk", DCRPaper(num_classes=16), parity_dir, save_original, load_into, ddp=True)
