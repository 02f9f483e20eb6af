"""One-step weights: ``facerec.create(kind, name, weights=CARD_OR_FILE)`` builds, applies the card's
parameters, checks its input spec and loads strictly; ``--weights`` on the CLI goes through the same path.

Cards come from a real installed distribution (a dist-info with a ``facerec.weights`` entry point on
``sys.path``, its weight file inside the package), and from the dlib plugin when it is installed."""

from __future__ import annotations

import hashlib
import textwrap
from pathlib import Path

import pytest
import torch

import facerec
from facerec.nn import SmallCNN
from facerec.errors import ParameterError, WeightsError
from facerec.registry import refresh
from facerec.weights import create_with_weights, load_weights, resolve_weights, save_weights

PLUGIN = "facerec_test_cards"


def _same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _trained(seed: int) -> SmallCNN:
    torch.manual_seed(seed)
    return SmallCNN(embedding_size=16, width=8)


@pytest.fixture(scope="module")
def cards(tmp_path_factory):
    """Installs a distribution registering three cards for ``small-cnn`` (built with embedding_size=16,
    width=8): a good one, one whose input spec is not the model's, one for another architecture."""
    root = tmp_path_factory.mktemp("site")
    pkg = root / PLUGIN
    pkg.mkdir()
    weights = save_weights(_trained(3), pkg / "tiny.safetensors")
    sha = hashlib.sha256(weights.read_bytes()).hexdigest()
    (pkg / "__init__.py").write_text(
        textwrap.dedent(f"""
        from facerec.api import InputSpec
        from facerec.weights import WeightCard, WeightFile
        FACEREC_API = 1
        FILES = [WeightFile("tiny.safetensors", sha256="{sha}", package="{PLUGIN}:tiny.safetensors")]
        PARAMS = {{"embedding_size": 16, "width": 8}}
        GOOD = WeightCard(name="tiny-good", arch="small-cnn", files=FILES, params=PARAMS)
        BGR = WeightCard(name="tiny-bgr", arch="small-cnn", files=FILES, params=PARAMS,
                         input_spec=InputSpec(size=112, color="BGR", mean=0.5, std=0.5))
        OTHER = WeightCard(name="tiny-other", arch="lightcnn-none", files=FILES)
        REMOTE = WeightCard(name="tiny-remote", arch="small-cnn", params=PARAMS,
                            files=[WeightFile("r.safetensors", hf_repo="facerec-test/absent")])
    """)
    )
    info = root / f"{PLUGIN}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {PLUGIN}\nVersion: 0.1\nRequires-Dist: facerec-core>=1.0\n"
    )
    (info / "entry_points.txt").write_text(
        f"[facerec.weights]\ntiny-good = {PLUGIN}:GOOD\n"
        f"tiny-bgr = {PLUGIN}:BGR\ntiny-other = {PLUGIN}:OTHER\n"
        f"tiny-remote = {PLUGIN}:REMOTE\n"
    )
    mp = pytest.MonkeyPatch()
    mp.syspath_prepend(str(root))
    refresh()
    yield root
    mp.undo()
    refresh()


def test_card_params_apply_and_load_strictly(cards):
    net = facerec.create("backbone", "small-cnn", weights="tiny-good")  # no parameters given: the card's
    assert isinstance(net, SmallCNN) and net.embedding_size == 16 and _same(net, _trained(3))
    # an explicit parameter equal to the card's is accepted
    assert _same(facerec.create("backbone", "small-cnn", weights="tiny-good", width=8), _trained(3))


def test_conflicting_parameter_names_both(cards):
    with pytest.raises(ParameterError) as exc:
        facerec.create("backbone", "small-cnn", weights="tiny-good", width=4)
    msg = str(exc.value)
    assert "width=4" in msg and "width=8" in msg and "tiny-good" in msg and "\n" not in msg


def test_card_checked_before_its_file_is_fetched(cards, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    with pytest.raises(ParameterError, match="width=4 contradicts weights 'tiny-remote'"):
        facerec.create("backbone", "small-cnn", weights="tiny-remote", width=4)
    with pytest.raises(WeightsError, match="HF_HUB_OFFLINE is set"):  # all fits: then the fetch is tried
        facerec.create("backbone", "small-cnn", weights="tiny-remote")


def test_input_spec_mismatch(cards):
    with pytest.raises(WeightsError) as exc:
        facerec.create("backbone", "small-cnn", weights="tiny-bgr")
    assert "input spec" in str(exc.value) and "color card 'BGR' vs model 'RGB'" in str(exc.value)


def test_card_for_another_architecture(cards):
    with pytest.raises(WeightsError, match="'tiny-other' are for backbone 'lightcnn-none', not backbone 'small-cnn'"):
        facerec.create("backbone", "small-cnn", weights="tiny-other")
    with pytest.raises(WeightsError, match="not head 'arcface'"):
        facerec.create("head", "arcface", weights="tiny-good", embedding_size=16, num_classes=4)


def test_cli_weights_card_goes_the_same_way(cards, tmp_path, run_facerun):
    """--weights CARD with a contradicting --param: the same one-line error from facerun."""
    import os

    env = {"PYTHONPATH": os.pathsep.join([str(cards), os.environ.get("PYTHONPATH", "")])}
    bad = run_facerun(
        "extract",
        "--backbone",
        "small-cnn",
        "--weights",
        "tiny-good",
        "--param",
        "backbone.width=4",
        "--data",
        str(tmp_path),
        "--out",
        str(tmp_path / "f.safetensors"),
        env=env,
        check=False,
    )
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1 and "width=8" in bad.stderr, bad.stderr


def test_file_weights(tmp_path):
    path = save_weights(_trained(5), tmp_path / "m.safetensors")
    net = facerec.create("backbone", "small-cnn", weights=str(path), embedding_size=16, width=8)
    assert _same(net, _trained(5))
    model, resolved = create_with_weights("backbone", "small-cnn", path, {"embedding_size": 16, "width": 8})
    assert resolved.card is None and resolved.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    # a file carries no card: parameters that do not fit it fail the strict load, in one line
    with pytest.raises(WeightsError, match="shape mismatch") as exc:
        facerec.create("backbone", "small-cnn", weights=path)
    assert "\n" not in str(exc.value)
    with pytest.raises(WeightsError, match="neither a file nor a registered card"):
        facerec.create("backbone", "small-cnn", weights=tmp_path / "missing.safetensors")


def test_weights_none_unchanged():
    torch.manual_seed(1)
    a = facerec.create("backbone", "small-cnn", weights=None, width=8)
    torch.manual_seed(1)
    assert _same(a, facerec.create("backbone", "small-cnn", width=8))


def test_dlib_card_one_step():
    pytest.importorskip("face_recognition_models", reason="the dlib card's file comes from face-recognition-models")
    try:
        facerec.registry.find("weights", "dlib-resnet29")
    except facerec.FacerecError:
        pytest.skip("facerec-dlib is not installed")
    net = facerec.create("backbone", "dlib-resnet29", weights="dlib-resnet29")
    two_step = load_weights(facerec.create("backbone", "dlib-resnet29"), resolve_weights("dlib-resnet29").path)
    assert _same(net, two_step)
    assert net.input_spec == resolve_weights("dlib-resnet29").card.input_spec
    assert Path(resolve_weights("dlib-resnet29").path).name == "dlib_face_recognition_resnet_model_v1.dat"
