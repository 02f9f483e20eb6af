"""The Detector interface and MTCNN: NMS and patch resizing against plain references, weight reading
and conversion, real faces (Yale, AT&T, LFW), and parity with facenet-pytorch's own code.

The real-weight tests need the released weights (``pip install --no-deps facenet-pytorch==2.6.0``,
which the core nox session does) and skip with that reason where they are absent.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from facerec.api import Detections, Detector
from facerec.data.detect import nms as nms_mod
from facerec.data.detect.patches import resized_patches
from facerec.data.detect.released import NETS, _KEYS, convert_released, installed_folder
from facerec.errors import ParameterError, WeightsError

YALE = [
    "subject01.happy",
    "subject03.glasses",
    "subject05.leftlight",
    "subject07.surprised",
    "subject10.normal",
    "subject14.wink",
]
ATT = ["s1/1.pgm", "s5/3.pgm", "s12/1.pgm", "s20/7.pgm", "s34/1.pgm", "s40/10.pgm"]


@pytest.fixture(scope="module")
def weights_folder() -> Path:
    folder = installed_folder()
    if folder is None:
        pytest.skip("MTCNN weights absent: pip install --no-deps facenet-pytorch==2.6.0 (the core nox session does)")
    return folder


@pytest.fixture(scope="module")
def mtcnn(weights_folder):
    from facerec.data.detect import MTCNN

    torch.manual_seed(0)
    return MTCNN()


#: the portraits, as paths under shared/data
FACES = [f"yalefaces/{n}" for n in YALE] + [f"att_faces/{n}" for n in ATT]


def _face(shared: Path, name: str) -> torch.Tensor:
    from facerec.data.decode import decode_uint8, read_bytes

    return decode_uint8(read_bytes(shared / name))


# ------------------------------------------------------------------------------------------------
# pieces without weights


def _greedy_reference(boxes, scores, thr, mode, plus_one):
    """The textbook loop (as the numpy reference writes it)."""
    one = 1.0 if plus_one else 0.0
    b = boxes.double().numpy()
    order = list(np.argsort(-scores.numpy(), kind="stable"))
    keep = []
    while order:
        i = order.pop(0)
        keep.append(i)
        rest = []
        for j in order:
            w = max(0.0, min(b[i, 2], b[j, 2]) - max(b[i, 0], b[j, 0]) + one)
            h = max(0.0, min(b[i, 3], b[j, 3]) - max(b[i, 1], b[j, 1]) + one)
            ai = (b[i, 2] - b[i, 0] + one) * (b[i, 3] - b[i, 1] + one)
            aj = (b[j, 2] - b[j, 0] + one) * (b[j, 3] - b[j, 1] + one)
            o = w * h / (min(ai, aj) if mode == "min" else ai + aj - w * h)
            if o <= thr:
                rest.append(j)
        order = rest
    return keep


@pytest.mark.parametrize("mode,plus_one", [("union", False), ("min", True), ("union", True)])
def test_nms_matches_the_greedy_loop_per_group(mode, plus_one):
    g = torch.Generator().manual_seed(3)
    n = 400
    xy = torch.rand(n, 2, generator=g) * 120
    boxes = torch.cat([xy, xy + 8 + torch.rand(n, 2, generator=g) * 40], 1)  # dense: long suppression chains
    scores = torch.rand(n, generator=g)
    groups = torch.randint(0, 3, (n,), generator=g)
    got = nms_mod.nms(boxes, scores, 0.5, groups, mode=mode, plus_one=plus_one)
    for k in range(3):
        idx = torch.nonzero(groups == k).flatten()
        expect = idx[_greedy_reference(boxes[idx], scores[idx], 0.5, mode, plus_one)]
        mine = got[groups[got] == k]
        assert mine.tolist() == expect.tolist()  # same boxes, in descending score order
    assert 10 < len(got) < n  # the case is not trivial


def test_nms_block_split_changes_nothing(monkeypatch):
    g = torch.Generator().manual_seed(4)
    xy = torch.rand(300, 2, generator=g) * 100
    boxes, scores = torch.cat([xy, xy + 30], 1), torch.rand(300, generator=g)
    whole = nms_mod.nms(boxes, scores, 0.3)
    monkeypatch.setattr(nms_mod, "_BLOCK_ELEMENTS", 900)  # 3 rows per block
    assert nms_mod.nms(boxes, scores, 0.3).tolist() == whole.tolist()


@pytest.mark.parametrize("size", [24, 48])
def test_patches_equal_area_interpolation_of_each_crop(size):
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (2, 3, 70, 90), generator=g).float()
    regions = torch.tensor(
        [[0, 0, 90, 70], [10, 5, 21, 17], [3, 4, 80, 66], [-10, -5, 40, 50], [60, 40, 130, 100], [5, 5, 6, 6]]
    )
    index = torch.tensor([0, 1, 0, 1, 0, 1])
    stretch = resized_patches(images, index, regions, size, "stretch")
    zero = resized_patches(images, index, regions, size, "zero")
    for k, (x0, y0, x1, y1) in enumerate(regions.tolist()):
        img = images[index[k]]
        crop = img[:, max(y0, 0) : min(y1, 70), max(x0, 0) : min(x1, 90)]
        ref = F.interpolate(crop[None], size=(size, size), mode="area")[0]
        assert torch.allclose(stretch[k], ref, atol=1e-3)
        padded = F.pad(img, (max(-x0, 0), max(x1 - 90, 0), max(-y0, 0), max(y1 - 70, 0)))
        ox, oy = x0 + max(-x0, 0), y0 + max(-y0, 0)  # the region's origin inside the padded image
        ref0 = F.interpolate(padded[None, :, oy : oy + (y1 - y0), ox : ox + (x1 - x0)], size=(size, size), mode="area")[
            0
        ]
        assert torch.allclose(zero[k], ref0, atol=1e-3)
    assert not torch.allclose(stretch[3], zero[3])  # the region leaving the image differs, by design


def test_detections_value_type():
    d = Detections(torch.tensor([[0, 0, 10, 10], [0, 0, 40, 30.0]]), [0.9, 0.8], torch.zeros(2, 5, 2))
    assert len(d) == 2 and d.largest().scores.tolist() == pytest.approx([0.8])
    assert len(Detections.empty()) == 0 and len(Detections.empty().largest()) == 0
    with pytest.raises(ValueError, match="landmarks"):
        Detections(torch.zeros(2, 4), torch.zeros(2), torch.zeros(2, 4, 2))


class _Centre(Detector):
    """A toy detector: one 'face' at each image's centre; records the batches it was given."""

    def __init__(self):
        self.calls = []

    def detect_batch(self, images):
        self.calls.append(tuple(images.shape))
        h, w = images.shape[-2:]
        return [
            Detections([[0, 0, w - 1, h - 1]], [1.0], torch.full((1, 5, 2), 0.0) + torch.tensor([w / 2, h / 2]))
            for _ in range(images.shape[0])
        ]


def test_detect_groups_a_list_by_size():
    det = _Centre()
    images = [torch.rand(3, 40, 50), torch.rand(3, 30, 30), torch.rand(3, 40, 50)]
    found = det.detect(images)
    assert sorted(det.calls) == [(1, 3, 30, 30), (2, 3, 40, 50)]
    assert [tuple(f.landmarks[0, 0].tolist()) for f in found] == [(25, 20), (15, 15), (25, 20)]
    with pytest.raises(ValueError, match="batch dimension"):
        det.detect(torch.rand(3, 40, 50))


# ------------------------------------------------------------------------------------------------
# weights


def _random_original_state() -> dict[str, dict[str, torch.Tensor]]:
    """State dicts in the released layout (names and shapes), random values."""
    from facerec.data.detect.nets import ONet, PNet, RNet

    g = torch.Generator().manual_seed(1)
    out = {}
    for net, cls in zip(NETS, (PNet, RNet, ONet)):
        ours = cls().state_dict()
        inverse = {v: k for k, v in _KEYS[net].items()}
        out[net] = {
            f"{inverse[k.rsplit('.', 1)[0]]}.{k.rsplit('.', 1)[1]}": torch.randn(v.shape, generator=g) * 0.1
            for k, v in ours.items()
        }
    return out


def test_converter_reproduces_the_original_layout():
    """The released nets flatten (x, y, c) and emit x1..x5 then y1..y5; ours must compute the same."""
    from facerec.data.detect import MTCNN

    orig = _random_original_state()
    model = MTCNN(weights=convert_released(orig))
    o = orig["onet"]
    x = torch.randn(3, 3, 48, 48)
    h = x
    for conv, prelu, pool in (
        ("conv1", "prelu1", 3),
        ("conv2", "prelu2", 3),
        ("conv3", "prelu3", 2),
        ("conv4", "prelu4", None),
    ):
        h = F.prelu(F.conv2d(h, o[f"{conv}.weight"], o[f"{conv}.bias"]), o[f"{prelu}.weight"])
        if pool:
            h = F.max_pool2d(h, pool, 2, ceil_mode=True)
    h = F.prelu(
        F.linear(h.permute(0, 3, 2, 1).reshape(3, -1), o["dense5.weight"], o["dense5.bias"]), o["prelu5.weight"]
    )
    pts = F.linear(h, o["dense6_3.weight"], o["dense6_3.bias"])
    prob = F.linear(h, o["dense6_1.weight"], o["dense6_1.bias"]).softmax(1)[:, 1]
    box = F.linear(h, o["dense6_2.weight"], o["dense6_2.bias"])
    with torch.no_grad():
        p, b, ours = model.onet(x.contiguous(memory_format=torch.channels_last))
    assert torch.allclose(p, prob, rtol=1e-4, atol=1e-5) and torch.allclose(b, box, rtol=1e-4, atol=1e-4)
    assert torch.allclose(ours[..., 0], pts[:, :5], rtol=1e-4, atol=1e-4)
    assert torch.allclose(ours[..., 1], pts[:, 5:], rtol=1e-4, atol=1e-4)


@pytest.fixture(scope="module")
def weight_sources(tmp_path_factory, weights_folder) -> tuple[dict[str, Path], dict]:
    """The released weights as every source MTCNN reads (folder, wheel, converted file, package folder),
    and what the conversion reported."""
    from facerec.data.detect.released import convert

    tmp = tmp_path_factory.mktemp("mtcnn-sources")
    wheel = tmp / "facenet_pytorch-2.6.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        for net in NETS:
            z.write(weights_folder / f"{net}.pt", f"facenet_pytorch/data/{net}.pt")
    info = convert(wheel, tmp / "mtcnn.safetensors")
    return {
        "folder": weights_folder,
        "wheel": wheel,
        "safetensors": tmp / "mtcnn.safetensors",
        "package": weights_folder.parent,
    }, info


def test_converted_wheel_holds_every_tensor(weight_sources, weights_folder):
    from safetensors import safe_open

    sources, info = weight_sources
    with safe_open(str(sources["safetensors"]), "pt") as f:
        written = len(list(f.keys()))
    expected = sum(len(torch.load(weights_folder / f"{net}.pt", weights_only=True)) for net in NETS)
    assert info["tensors"] == written == expected


@pytest.mark.parametrize("source", ["folder", "wheel", "safetensors", "package"])
def test_weights_from_folder_wheel_and_safetensors(weight_sources, source):
    from facerec.data.detect import MTCNN

    ref = MTCNN().state_dict()
    got = MTCNN(weights=weight_sources[0][source]).state_dict()
    assert all(torch.equal(ref[k], got[k]) for k in ref)


#: a weights source MTCNN refuses (made in a fresh folder) -> what its one-line error says
BAD_WEIGHTS = {
    "empty": "no pnet.pt",
    "notes.txt": "must be",
    "gone.whl": "neither a file",
    "other.safetensors": "not MTCNN weights",
}


@pytest.mark.parametrize(("name", "words"), BAD_WEIGHTS.items(), ids=BAD_WEIGHTS)
def test_bad_weights_are_one_line_errors(tmp_path, name, words):
    from safetensors.torch import save_file

    from facerec.data.detect import MTCNN

    (tmp_path / "empty").mkdir()
    (tmp_path / "notes.txt").write_text("hello")
    torch.save({"conv1.weight": torch.zeros(3)}, tmp_path / "pnet.pt")
    save_file({"w": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(WeightsError) as err:
        MTCNN(weights=tmp_path / name)
    assert words in str(err.value) and "\n" not in str(err.value)


def test_weights_with_unexpected_keys_and_bad_parameters_are_refused(tmp_path, weights_folder):
    from facerec.data.detect import MTCNN

    broken = tmp_path / "broken"
    broken.mkdir()
    for net in NETS:
        (broken / f"{net}.pt").write_bytes((weights_folder / f"{net}.pt").read_bytes())
    torch.save(
        {**torch.load(weights_folder / "rnet.pt", weights_only=True), "extra.weight": torch.zeros(1)},
        broken / "rnet.pt",
    )
    with pytest.raises(WeightsError, match="unexpected keys extra.weight"):
        MTCNN(weights=broken)
    with pytest.raises(ParameterError, match="min_size"):
        MTCNN(min_size=5)


# ------------------------------------------------------------------------------------------------
# real faces


@pytest.mark.parametrize("name", FACES)
def test_one_plausible_face_per_portrait(mtcnn, shared_data, name):
    found = mtcnn.detect(_face(shared_data, name)[None])[0]
    assert len(found) == 1
    (x1, _, x2, _), lm = found.boxes[0].tolist(), found.landmarks[0]
    assert 40 < x2 - x1 < 220 and float(found.scores[0]) > 0.9
    le, re, nose, lm_, rm = lm.tolist()
    assert le[0] < nose[0] < re[0] and lm_[0] < rm[0]  # left/right as seen in the image
    assert max(le[1], re[1]) < nose[1] < min(lm_[1], rm[1])  # eyes, then nose, then mouth
    assert (lm[:, 0] > x1 - 2).all() and (lm[:, 0] < x2 + 2).all()


def test_batched_and_float_input_give_the_same_faces(mtcnn, shared_data):
    faces = [_face(shared_data, name) for name in FACES[:3]]  # three Yale images, one size
    one_by_one = [mtcnn.detect(f[None])[0] for f in faces]
    batched = mtcnn.detect(torch.stack(faces).float() / 255)
    for a, b in zip(one_by_one, batched):
        assert len(a) == len(b)
        assert torch.allclose(a.landmarks, b.landmarks, atol=0.05) and torch.allclose(a.boxes, b.boxes, atol=0.05)


def test_landmarks_land_on_the_arcface_template_on_lfw(mtcnn, shared_data):
    """insightface's LFW chips were aligned from MTCNN points to the arcface112 template: our
    points on them must sit on the template, which fixes the pixel convention to within a pixel."""
    from facerec.data.align import ARCFACE_112
    from facerec.data.decode import read_image
    from facerec.data.detect import MTCNN

    root = shared_data / "lfw" / "lfw-aligned-112x112"
    files = sorted(root.glob("*/*.jpg"))[::400][:24]
    chips = torch.stack([read_image(f) for f in files])
    stretch = MTCNN(border="stretch")
    offsets = {}
    for name, det in (("zero", mtcnn), ("stretch", stretch)):
        found = det.detect(chips)
        assert all(len(f) >= 1 for f in found)
        offsets[name] = np.stack([f.largest().landmarks[0].numpy() - ARCFACE_112 for f in found])
    mean = offsets["zero"].mean((0, 1))
    assert abs(mean[0]) < 1.0 and abs(mean[1]) < 1.0, mean
    rms = {k: float(np.sqrt((v**2).sum(-1).mean())) for k, v in offsets.items()}
    assert rms["zero"] < rms["stretch"]  # why zero padding (the original MTCNN's) is the default


# ------------------------------------------------------------------------------------------------
# parity with facenet-pytorch


@pytest.fixture(scope="module")
def reference(weights_folder):
    """facenet-pytorch's MTCNN, loaded without its package __init__ (which imports requests for the
    InceptionResnet download, absent in a --no-deps install); its detection code runs as released."""
    spec = importlib.util.find_spec("facenet_pytorch")
    saved = {k: v for k, v in sys.modules.items() if k == "facenet_pytorch" or k.startswith("facenet_pytorch.")}
    pkg = types.ModuleType("facenet_pytorch")
    pkg.__path__ = list(spec.submodule_search_locations)
    pkg.__spec__ = spec
    sys.modules["facenet_pytorch"] = pkg
    try:
        module = importlib.import_module("facenet_pytorch.models.mtcnn")
        yield module.MTCNN(keep_all=True, select_largest=False)
    finally:
        for k in [k for k in sys.modules if k == "facenet_pytorch" or k.startswith("facenet_pytorch.")]:
            del sys.modules[k]
        sys.modules.update(saved)


@pytest.fixture(scope="module")
def stretched(weights_folder):
    from facerec.data.detect import MTCNN

    return MTCNN(border="stretch")


@pytest.mark.parametrize("name", FACES)
def test_parity_with_facenet_pytorch(reference, stretched, shared_data, name):
    """Same boxes, scores and landmarks as the reference on real faces (its border rule: stretch)."""
    from PIL import Image

    img = _face(shared_data, name)
    boxes, probs, points = reference.detect(Image.fromarray(img.permute(1, 2, 0).numpy()), landmarks=True)
    found = stretched.detect(img[None])[0]
    assert boxes is not None and len(boxes) == len(found)
    worst_box = float(np.abs(boxes - found.boxes.numpy()).max())
    worst_point = float(np.abs(points - found.landmarks.numpy()).max())
    assert np.allclose(np.asarray(probs, dtype=np.float32), found.scores.numpy(), atol=1e-4)
    assert worst_box < 0.05 and worst_point < 0.05, (worst_box, worst_point)  # the brief asks 1 px


def test_detector_kind_is_listed_and_described(run_facerun):
    import json

    rows = json.loads(run_facerun("plugins", "--json").stdout)
    mine = [r for r in rows if r["kind"] == "detector" and r["name"] == "mtcnn"]
    assert len(mine) == 1 and mine[0]["distribution"] == "facerec-core" and mine[0]["error"] is None
    card = [r for r in rows if r["kind"] == "weights" and r["name"] == "mtcnn-facenet-pytorch"]
    assert len(card) == 1
    info = run_facerun("info", "detector", "mtcnn").stdout
    assert "Multitask Cascaded Convolutional Networks" in info and "min_size: default 20" in info
    assert "weights: mtcnn-facenet-pytorch" in info


def test_weights_card_offline_is_one_line(tmp_path, run_facerun, shared_data):
    raw = tmp_path / "raw" / "someone"
    raw.mkdir(parents=True)
    (raw / "a.gif").write_bytes((shared_data / "yalefaces" / "subject01.happy").read_bytes())
    proc = run_facerun(
        "data",
        "align",
        str(raw.parent),
        "--out",
        str(tmp_path / "o.lmdb"),
        "--template",
        "arcface112",
        "--detector-weights",
        "mtcnn-facenet-pytorch",
        check=False,
        env={"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")},
    )
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "mtcnn-facenet-pytorch" in lines[0] and "HF_HUB_OFFLINE" in lines[0], proc.stderr
