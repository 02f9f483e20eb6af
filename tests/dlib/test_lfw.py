"""The README's quickstart: dlib's model recognises real faces. `facerun eval` on the shared LFW (6,000
pairs, ArcFace-112 aligned) warps the images into dlib's chip and matches what dlib's own descriptors
score on the same chips; plainly resized, the same images score far lower (the silent bug of issue 21)."""

from __future__ import annotations

import json


#: dlib's own descriptors (dlib-bin 20.0.1) on the shared LFW warped into dlib150 by facerec (rounded to
#: uint8 for dlib), scored by facerec's pairs protocol: 98.67 ± 0.48, measured with
#: plugins/facerec-dlib/scripts/lfw_dlib_reference.py (facerun itself measured 98.73 ± 0.45).
DLIB_REFERENCE = 98.67
TOLERANCE = 0.3


def test_lfw_ten_fold_accuracy_matches_dlibs_own(dlib_dat, lfw_dir, run_facerun, tmp_path):
    out = tmp_path / "report"
    proc = run_facerun(
        "eval",
        "--backbone",
        "dlib-resnet29",
        "--weights",
        "dlib-resnet29",
        "--protocol",
        "pairs",
        "--data",
        str(lfw_dir),
        "--out",
        str(out),
        "-q",
        timeout=1800,
    )
    assert "warped to dlib150" in proc.stderr and proc.stderr.count("warped to dlib150") == 1
    line = next(ln for ln in proc.stdout.splitlines() if " over 10 folds" in ln)
    assert "% ± " in line and "TAR" in line  # accuracy ± std, TAR@FAR
    report = json.loads((out / "metrics.json").read_text())
    m = report["protocols"]["pairs"]["metrics"]
    assert m["n_pairs"] == 6000 and m["n_folds"] == 10 and m["n_skipped"] == 0
    assert abs(100 * m["accuracy"] - DLIB_REFERENCE) <= TOLERANCE, m
    assert 0 < m["accuracy_std"] < 0.02 and m["tar@far=0.01"] > 0.95
    info = report["info"]
    assert info["weights_card"] == "dlib-resnet29" and info["weights_file"] == str(dlib_dat.resolve())
    assert info["weights_sha256"].startswith("55533b28") and info["input_spec"]["template"] == "dlib150"
    assert info["data_template"] == "arcface112" and info["model_template"] == "dlib150"
    assert (out / "pairs_roc.csv").is_file() and (out / "pairs_folds.csv").is_file()


def test_plain_resizing_is_what_the_warp_fixes(dlib_dat, lfw_dir, run_facerun):
    """On 600 of the pairs: told the images are already dlib chips, facerun only resizes them (no warp,
    as before issue 21) and loses many points."""
    args = [
        "eval",
        "--backbone",
        "dlib-resnet29",
        "--weights",
        "dlib-resnet29",
        "--protocol",
        "pairs",
        "--data",
        str(lfw_dir),
        "--param",
        "protocol.max_pairs=600",
        "--json",
        "-q",
    ]
    warped = json.loads(run_facerun(*args).stdout)["accuracy"]
    resized = run_facerun(*args, "--data-template", "dlib150")
    assert "warped" not in resized.stderr
    assert warped - json.loads(resized.stdout)["accuracy"] > 0.05
    assert warped > 0.96
