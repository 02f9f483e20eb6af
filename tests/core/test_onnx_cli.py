"""facerun export --format onnx and facerun eval/extract --backbone onnx:FILE, run as a user would."""

from __future__ import annotations

import hashlib
import importlib.util
import pickle

import pytest
import torch
from safetensors.torch import load_file, save_file

import facerec

onnx = pytest.importorskip("onnx", reason="ONNX tests need the test extra (requirements/test.txt)")
pytest.importorskip("onnxruntime", reason="ONNX tests need the test extra (requirements/test.txt)")

PARAMS = ("--param", "backbone.width=8", "--param", "backbone.embedding_size=32")


@pytest.fixture
def weights(tmp_path):
    """small-cnn weights with BatchNorm statistics from random batches (outputs that vary with the input)."""
    torch.manual_seed(0)
    net = facerec.create("backbone", "small-cnn", width=8, embedding_size=32)
    for m in net.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.momentum = None  # cumulative average of the random batches
    net.train()
    with torch.no_grad():
        for _ in range(3):
            net.embed(torch.rand(16, 3, 112, 112))
    path = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    return path


@pytest.fixture
def pairs_bin(tmp_path):
    """A small insightface .bin of synthetic faces (8 pairs)."""
    from facerec.data.decode import encode_jpeg

    ds = facerec.create("dataset", "synthetic", num_ids=4, per_id=4, image_size=112)
    images, same = [], []
    for i in range(8):
        a, b = 2 * i, (2 * i + (1 if i % 2 == 0 else 5)) % 16
        images += [encode_jpeg(ds[a]["image"]), encode_jpeg(ds[b]["image"])]
        same.append(bool(ds.labels[a] == ds.labels[b]))
    path = tmp_path / "lfw.bin"
    path.write_bytes(pickle.dumps((images, same), protocol=2))
    return path


def test_export_dynamic_batch_metadata_and_eval_through_onnx_runtime(tmp_path, weights, pairs_bin, run_facerun):
    out = tmp_path / "model.onnx"
    text = run_facerun(
        "export", "--backbone", "small-cnn", "--weights", str(weights), *PARAMS, "--out", str(out)
    ).stdout
    assert "input [batch, 3, 112, 112]" in text and "at batch 32" in text
    model = onnx.load(str(out))
    dim0 = model.graph.input[0].type.tensor_type.shape.dim[0]
    assert dim0.dim_param == "batch"
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["facerec.backbone"] == "small-cnn" and meta["facerec.embedding_size"] == "32"
    assert meta["facerec.weights_sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert meta["facerec.preprocessing"] == "none" and meta["facerec.batch"] == "dynamic"
    assert '"mean": [0.5]' in meta["facerec.input_spec"] or '"mean": [0.5' in meta["facerec.input_spec"]
    # the same protocol numbers through ONNX Runtime as through PyTorch, and embeddings within 1e-4
    via_onnx = run_facerun(
        "eval",
        "--backbone",
        f"onnx:{out}",
        "--protocol",
        "pairs",
        "--data",
        str(pairs_bin),
        "--param",
        "protocol.n_folds=2",
        "-q",
    ).stdout
    via_torch = run_facerun(
        "eval",
        "--backbone",
        "small-cnn",
        "--weights",
        str(weights),
        *PARAMS,
        "--protocol",
        "pairs",
        "--data",
        str(pairs_bin),
        "--param",
        "protocol.n_folds=2",
        "-q",
    ).stdout
    assert via_onnx == via_torch and "accuracy=" in via_onnx
    from facerec.data.writers import write_dataset

    folder = tmp_path / "faces"

    write_dataset(facerec.create("dataset", "synthetic", num_ids=3, per_id=3, image_size=112), folder, "folder")
    run_facerun(
        "extract",
        "--backbone",
        f"onnx:{out}",
        "--data",
        str(folder),
        "--out",
        str(tmp_path / "a.safetensors"),
        "-q",
        "--batch-size",
        "4",
    )
    run_facerun(
        "extract",
        "--backbone",
        "small-cnn",
        "--weights",
        str(weights),
        *PARAMS,
        "--data",
        str(folder),
        "--out",
        str(tmp_path / "b.safetensors"),
        "-q",
        "--no-optimize",
    )
    a, b = load_file(str(tmp_path / "a.safetensors")), load_file(str(tmp_path / "b.safetensors"))
    assert a["embeddings"].shape == (9, 32)
    assert (a["embeddings"] - b["embeddings"]).abs().max() <= 1e-4 * max(1.0, float(b["embeddings"].abs().max()))
    assert (b["embeddings"][0] - b["embeddings"][3]).abs().max() > 1e-2  # the comparison can fail


def test_fixed_batch_with_preprocessing_folded_is_fed_in_chunks(tmp_path, weights):
    from facerec.onnx.embedder import OnnxEmbedder
    from facerec.onnx.export import export_onnx

    net = facerec.create("backbone", "small-cnn", width=8, embedding_size=32)
    facerec.load_weights(net, str(weights))
    result = export_onnx(
        net.eval(), tmp_path / "fixed.onnx", name="small-cnn", batch=4, with_preprocessing=True, weights=weights
    )
    assert list(result.max_abs_diff) == [4]
    model = onnx.load(str(tmp_path / "fixed.onnx"))
    assert [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim] == [4, 3, 112, 112]
    emb = OnnxEmbedder(tmp_path / "fixed.onnx")
    assert emb.batch == 4 and emb.folded and emb.input_spec == net.input_spec
    images = torch.rand(10, 3, 112, 112)  # 4 + 4 + 2 (padded)
    with torch.no_grad():
        expected = net.embed(images)
    got = emb(images)
    assert got.shape == (10, 32) and (got - expected).abs().max() <= 1e-4 * max(1.0, float(expected.abs().max()))


@pytest.mark.skipif(importlib.util.find_spec("onnxscript") is None, reason="--exporter dynamo needs onnxscript")
def test_dynamo_exporter(tmp_path, weights, run_facerun):
    out = tmp_path / "d.onnx"
    text = run_facerun(
        "export",
        "--backbone",
        "small-cnn",
        "--weights",
        str(weights),
        *PARAMS,
        "--out",
        str(out),
        "--exporter",
        "dynamo",
        "--with-preprocessing",
    ).stdout
    assert "opset 18" in text and "at batch 7" in text
    dims = onnx.load(str(out)).graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param and not dims[0].HasField("dim_value")


#: name -> (facerun arguments given the folder, the weights file and the .bin, what the one-line error says)
BAD_INPUT = {
    "suffix": (lambda t, w, b: ("export", "--backbone", "small-cnn", "--out", str(t / "m.txt")), "must end in .onnx"),
    "batch": (
        lambda t, w, b: ("export", "--backbone", "small-cnn", "--out", str(t / "m.onnx"), "--batch", "0"),
        "--batch",
    ),
    "weights": (
        lambda t, w, b: ("export", "--backbone", "small-cnn", "--out", str(t / "m.onnx"), "--weights", str(t / "no")),
        "neither a file nor a registered card",
    ),
    "missing-model": (
        lambda t, w, b: ("eval", "--backbone", f"onnx:{t / 'none.onnx'}", "--protocol", "pairs", "--data", str(b)),
        "ONNX model not found",
    ),
    "not-onnx": (
        lambda t, w, b: ("eval", "--backbone", f"onnx:{w}", "--protocol", "pairs", "--data", str(b)),
        "ONNX Runtime cannot load it",
    ),
}


@pytest.mark.parametrize(("args", "needle"), BAD_INPUT.values(), ids=BAD_INPUT)
def test_bad_input_gets_one_line(tmp_path, weights, pairs_bin, run_facerun, args, needle):
    proc = run_facerun(*args(tmp_path, weights, pairs_bin), check=False)
    assert proc.returncode != 0 and needle in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_export_never_overwrites(tmp_path, run_facerun):
    (tmp_path / "m.onnx").write_bytes(b"exists")
    proc = run_facerun("export", "--backbone", "small-cnn", "--out", str(tmp_path / "m.onnx"), check=False)
    assert proc.returncode != 0 and "already exists" in proc.stderr
    assert (tmp_path / "m.onnx").read_bytes() == b"exists"


def test_missing_onnx_package_says_how_to_install(tmp_path, run_facerun):
    hide = tmp_path / "hide"
    for name in ("onnx", "onnxruntime"):
        (hide / name).mkdir(parents=True)
        (hide / name / "__init__.py").write_text(f"raise ImportError('No module named {name}')\n")
    proc = run_facerun(
        "export",
        "--backbone",
        "small-cnn",
        "--out",
        str(tmp_path / "m.onnx"),
        check=False,
        env={"PYTHONPATH": str(hide)},
    )
    assert proc.returncode == 1 and "facerec-core[onnx]" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "m.onnx").exists()
