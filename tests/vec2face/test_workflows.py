"""Issue 24 items 11-17 for Vec2Face: the training LMDB from images (prepare_training_set.py) and generator
training as commands, loss terms left out said in the log and report, min_separation in one pass, AttrOP
acceptance reported, reference-image centres from `facerun extract`, a failed generate that says how to
resume, and discriminator checkpoints loading without the generator module."""

from __future__ import annotations

import argparse
import io
import json
import shutil
import subprocess
import sys

import lmdb
import msgpack
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import facerec

LFW = ("Aaron_Peirsol", "Abdullah_Gul", "Abel_Pacheco")


@pytest.fixture(scope="module")
def faces(tmp_path_factory, shared_data):
    """3 identities x 3 aligned LFW faces, a flat folder of 2 reference faces, a small identity model."""
    from facerec.weights import save_weights

    root = tmp_path_factory.mktemp("v2f")
    src = shared_data / "lfw" / "lfw-aligned-112x112"
    for person in LFW:
        (root / "faces" / person).mkdir(parents=True)
        for f in sorted((src / person).glob("*.jpg"))[:3]:
            shutil.copy(f, root / "faces" / person / f.name)
    (root / "refs").mkdir()
    for person in LFW[:2]:
        f = sorted((src / person).glob("*.jpg"))[0]
        shutil.copy(f, root / "refs" / f.name)
    torch.manual_seed(0)
    small = facerec.create("backbone", "iresnet18", width=8)
    save_weights(small, root / "id.safetensors", {"arch": "iresnet18", "params": {"width": 8}})
    torch.save(
        {
            "model_vec2face": facerec.create("generator", "vec2face", config="tiny").state_dict(),
            "model_disc": {},
            "epoch": 1,
            "args": argparse.Namespace(model="tiny"),
        },
        root / "w.pth",
    )
    return root


def _records(path):
    env = lmdb.open(str(path), subdir=False, readonly=True, lock=False)
    with env.begin() as txn:
        n = msgpack.loads(txn.get(b"__len__"))
        out = [msgpack.loads(txn.get(str(i).encode())) for i in range(n)], msgpack.loads(txn.get(b"__classnum__"))
    env.close()
    return out


def test_prepare_and_train_commands(faces, run_facerun, tmp_path):
    """prepare_training_set.py + small_portion_training_mask.py + vec2face.py as facerun commands (item 11);
    the run says which loss terms are off, in its log and report (item 12)."""
    feats = tmp_path / "feats.safetensors"
    run_facerun(
        "extract",
        "--backbone",
        "iresnet18",
        "--param",
        "backbone.width=8",
        "--weights",
        str(faces / "id.safetensors"),
        "--data",
        str(faces / "faces"),
        "--out",
        str(feats),
        "-q",
        "--no-optimize",
    )
    out = tmp_path / "train.lmdb"
    run_facerun(
        "vec2face",
        "prepare",
        "--data",
        str(faces / "faces"),
        "--features",
        str(feats),
        "--out",
        str(out),
        "--mask-ids",
        "2",
    )
    recs, classnum = _records(out)
    table = load_file(str(feats))["embeddings"]
    files = sorted((faces / "faces").glob("*/*.jpg"))
    assert classnum == 3 and len(recs) == 9
    for i, (image, npy, label) in enumerate(recs):
        assert image == files[i].read_bytes()  # the original file's bytes, as the original stores them
        assert np.array_equal(np.load(io.BytesIO(npy)), table[i].numpy()) and label == i // 3
    np.random.seed(0)  # the original's mask: every image of 2 identities drawn with np.random.seed(0)
    chosen = np.random.choice([p.name for p in sorted((faces / "faces").iterdir())], 2, replace=False)
    want = [i for c in chosen for i, f in enumerate(files) if f.parent.name == c]
    assert np.load(str(out) + ".mask.npy").tolist() == want
    run = tmp_path / "run"
    proc = run_facerun(
        "vec2face",
        "train",
        "--data",
        str(out),
        "--mask",
        str(out) + ".mask.npy",
        "--config",
        "tiny",
        "--steps",
        "2",
        "--batch-size",
        "2",
        "--out",
        str(run),
    )
    assert "identity loss off" in proc.stderr and "LPIPS off" in proc.stderr
    notes = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines() if '"note"' in line]
    assert "identity loss off" in notes[0]["losses_off"]
    assert "identity loss off" in json.loads((run / "metrics.json").read_text())["losses_off"]
    assert "LPIPS off" in (run / "summary.md").read_text()
    # with an identity model the identity loss runs and is no longer reported off
    run2 = tmp_path / "run2"
    proc = run_facerun(
        "vec2face",
        "train",
        "--data",
        str(out),
        "--config",
        "tiny",
        "--steps",
        "1",
        "--batch-size",
        "2",
        "--identity-weights",
        str(faces / "id.safetensors"),
        "--out",
        str(run2),
    )
    assert "identity loss off" not in proc.stderr
    assert any('"id"' in line for line in (run2 / "log.jsonl").read_text().splitlines())
    # the trained generator is what `facerun generate` loads
    gen_out = tmp_path / "gen.lmdb"
    run_facerun(
        "generate",
        "--generator",
        "vec2face",
        "--param",
        "config=tiny",
        "--weights",
        str(run / "generator.safetensors"),
        "--ids",
        "2",
        "--per-id",
        "2",
        "--condition",
        f"centers={feats}",
        "--out",
        str(gen_out),
        "-q",
    )
    assert len(_records(gen_out)[0]) == 4


def test_min_separation_is_one_pass(monkeypatch):
    """Chunk-by-chunk identities (as facerun generate asks) equal one call, every pair stays below the
    threshold, and the candidates drawn grow linearly: the old code redrew every earlier identity per chunk."""
    from facerec_vec2face.generator import Vec2Face
    from facerec_vec2face.sampling import IdentitySampler

    drawn = []
    original = IdentitySampler._draw

    def counting(self, n, generator):
        drawn.append(n)
        return original(self, n, generator)

    monkeypatch.setattr(IdentitySampler, "_draw", counting)
    centres = torch.randn(600, 512, generator=torch.Generator().manual_seed(0)) * 1.4
    rows = {}
    for n in (500, 1000):
        g = Vec2Face(config="tiny", min_separation=0.3)
        g.fit_identity_sampler(centres)
        drawn.clear()
        chunks = torch.cat([g.identities(min(16, n - a), seed=3, first_id=a) for a in range(0, n, 16)])
        rows[n] = sum(drawn)
        once = Vec2Face(config="tiny", min_separation=0.3)
        once.fit_identity_sampler(centres)
        assert torch.equal(chunks, once.identities(n, seed=3))
    assert rows[1000] <= 2.5 * rows[500]  # linear in identities (the old redraws grew ~quadratically)
    unit = torch.nn.functional.normalize(chunks, dim=1)
    sim = unit @ unit.T
    assert float(sim.fill_diagonal_(0).max()) < 0.3


def test_attrop_acceptance_is_reported(faces, run_facerun, tmp_path):
    """Per run on the terminal and per identity in OUT.report.json (item 14)."""
    out = tmp_path / "q.lmdb"
    ident = str(faces / "id.safetensors")
    proc = run_facerun(
        "generate",
        "--generator",
        "vec2face",
        "--param",
        "config=tiny",
        "--weights",
        str(faces / "w.pth"),
        "--ids",
        "3",
        "--per-id",
        "2",
        "--ids-per-chunk",
        "2",
        "--condition",
        f"fit_centers={_centres(tmp_path)}",
        "--param",
        f"identity_weights={ident}",
        "--param",
        f"quality_weights={ident}",
        "--param",
        "attr_iters=1",
        "--condition",
        "quality=5",
        "--out",
        str(out),
        "-q",
    )
    report = json.loads((tmp_path / "q.lmdb.report.json").read_text())
    assert sorted(report["per_identity"]) == ["0", "1", "2"]
    assert report["run"]["identities"] == 3
    accepted = sum(v["centre_accepted"] for v in report["per_identity"].values())
    assert report["run"]["centre_accepted"] == accepted
    assert f"attribute control: {accepted} of 3 identity vectors met the targets" in proc.stdout


def _centres(tmp_path):
    path = tmp_path / "centres.npy"
    np.save(path, (np.random.default_rng(0).standard_normal((8, 512)) * 1.4).astype(np.float32))
    return path


def test_reference_image_centres_from_extract(faces, run_facerun, tmp_path):
    """image_generation_with_reference.py: `facerun extract` takes a flat folder, `centers=` reads its file
    (one identity per image); an identity-folder file gives one centre per identity (item 15)."""
    from facerec_vec2face.generator import load_centers

    refs = tmp_path / "refs.safetensors"
    run_facerun(
        "extract",
        "--backbone",
        "iresnet18",
        "--param",
        "backbone.width=8",
        "--weights",
        str(faces / "id.safetensors"),
        "--data",
        str(faces / "refs"),
        "--out",
        str(refs),
        "-q",
        "--no-optimize",
    )
    table = load_file(str(refs))
    assert "labels" not in table and table["embeddings"].shape[0] == 2
    assert torch.equal(load_centers(refs), table["embeddings"])
    out = tmp_path / "ref.lmdb"
    run_facerun(
        "generate",
        "--generator",
        "vec2face",
        "--param",
        "config=tiny",
        "--weights",
        str(faces / "w.pth"),
        "--ids",
        "2",
        "--per-id",
        "3",
        "--condition",
        f"centers={refs}",
        "--param",
        "perturb_eps=(0.2,)",
        "--param",
        "perturb_pct=(1.0,)",
        "--out",
        str(out),
        "-q",
    )
    assert [r[1] for r in _records(out)[0]] == [0, 0, 0, 1, 1, 1]  # HSFace records: (jpeg, label)
    grouped = tmp_path / "grouped.safetensors"
    run_facerun(
        "extract",
        "--backbone",
        "iresnet18",
        "--param",
        "backbone.width=8",
        "--weights",
        str(faces / "id.safetensors"),
        "--data",
        str(faces / "faces"),
        "--out",
        str(grouped),
        "-q",
        "--no-optimize",
    )
    g = load_file(str(grouped))
    means = torch.stack([g["embeddings"][g["labels"] == k].mean(0) for k in range(3)])
    assert torch.allclose(load_centers(grouped), means, atol=1e-6)


def test_failed_generate_says_how_to_resume(faces, run_facerun, tmp_path):
    """A run that stops after its first chunk keeps OUT.partial and says how to resume or clean it (item 16);
    running the same command again resumes there."""
    centres = tmp_path / "few.npy"
    np.save(centres, np.random.default_rng(0).standard_normal((3, 512)).astype(np.float32))
    args = (
        "generate",
        "--generator",
        "vec2face",
        "--param",
        "config=tiny",
        "--weights",
        str(faces / "w.pth"),
        "--ids",
        "4",
        "--per-id",
        "2",
        "--ids-per-chunk",
        "2",
        "--condition",
        f"centers={centres}",
        "--out",
        str(tmp_path / "g.lmdb"),
        "-q",
    )
    proc = run_facerun(*args, check=False)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "g.lmdb.partial keeps the images written so far: run the same command again to resume" in proc.stderr
    assert (tmp_path / "g.lmdb.partial").exists()
    np.save(centres, np.random.default_rng(0).standard_normal((4, 512)).astype(np.float32))
    again = run_facerun(*args)
    assert "resumed at image 4" in again.stdout and len(_records(tmp_path / "g.lmdb")[0]) == 8
    # a run that fails before writing anything leaves nothing behind
    bad = run_facerun(
        "generate",
        "--generator",
        "vec2face",
        "--param",
        "config=tiny",
        "--weights",
        str(faces / "w.pth"),
        "--ids",
        "4",
        "--per-id",
        "2",
        "--condition",
        f"fit_centers={centres}",
        "--param",
        "min_separation=-1.0",
        "--out",
        str(tmp_path / "none.lmdb"),
        "-q",
        check=False,
    )
    assert bad.returncode != 0 and "min_separation" in bad.stderr and "Traceback" not in bad.stderr
    assert not (tmp_path / "none.lmdb.partial").exists()


def test_discriminator_loads_an_original_checkpoint_alone(tmp_path):
    """load_weights(Discriminator(), original checkpoint) in a fresh process that never imports the generator."""
    from facerec_vec2face.discriminator import Discriminator

    disc = Discriminator((16, 32, 64, 128))
    torch.save(
        {
            "model_vec2face": {},
            "model_disc": disc.state_dict(),
            "epoch": 3,
            "args": argparse.Namespace(model="vec2face_vit_base_patch16"),
        },
        tmp_path / "checkpoint-last.pth",
    )
    code = (
        "import sys, facerec\n"
        "from facerec_vec2face.discriminator import Discriminator\n"
        f"facerec.load_weights(Discriminator((16, 32, 64, 128)), {str(tmp_path / 'checkpoint-last.pth')!r})\n"
        "assert 'facerec_vec2face.generator' not in sys.modules\n"
        "print('loaded')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "loaded" in proc.stdout, proc.stderr[-2000:]


@pytest.mark.parametrize("recipe", ["hsface", "vec2face"])
def test_paper_preset_recipes_run_the_given_steps(recipe, run_facerun, tmp_path):
    """Item 1: --param train.steps=2 wins over the paper preset's 26 epochs in both recipes."""
    out = tmp_path / recipe
    extra = (
        [
            "--generator",
            "vec2face",
            "--param",
            "recipe.gen_steps=1",
            "--param",
            "recipe.gen_config=tiny",
            "--param",
            "recipe.gen_batch=4",
        ]
        if recipe == "vec2face"
        else ["--recipe", "hsface"]
    )
    run_facerun(
        "--backbone",
        "iresnet50",
        *extra,
        "--preset",
        "paper",
        "--out",
        str(out),
        "--param",
        "train.steps=2",
        "--param",
        "train.amp='off'",
        "--param",
        "train.batch_size=4",
        "--param",
        "backbone.width=4",
        "--param",
        "backbone.image_size=32",
        "--param",
        "dataset.num_ids=4",
        "--param",
        "dataset.per_id=2",
        "--param",
        "protocol.pairs_per_fold=4",
        "--param",
        "protocol.num_folds=2",
        cwd=tmp_path,
    )
    metrics = json.loads((out / "metrics.json").read_text())
    runs = [metrics["real"], metrics["generated"]] if recipe == "vec2face" else [metrics]
    assert all(r["total_steps"] == 2 and r["step"] == 2 for r in runs)
