"""The README's quickstart 5 (generate a Vec2Face dataset), run from the README's own commands as its last
paragraph says they run without the released files: no ``--weights`` and ``--param config=tiny`` on
generate, on a few AT&T photos. The cards the commands name must be registered (their files come from the
Hugging Face Hub and cannot be fetched here)."""

from __future__ import annotations

import shlex
import shutil

SECTION = "Generate a Vec2Face dataset"


def _without_weights(command: str) -> tuple[list[str], list[str]]:
    tokens = shlex.split(command)[1:]
    cards = [tokens[i + 1] for i, t in enumerate(tokens) if t == "--weights"]
    tokens = [t for i, t in enumerate(tokens) if t != "--weights" and (i == 0 or tokens[i - 1] != "--weights")]
    small = {"--ids": "4", "--per-id": "2"}
    tokens = [small.get(tokens[i - 1], t) if i else t for i, t in enumerate(tokens)]
    if tokens[0] == "generate":
        tokens += ["--param", "config=tiny", "-q"]
    return tokens, cards


def test_quickstart_generate(shared_data, readme, run_facerun, tmp_path):
    for person in ("s1", "s2", "s3", "s4"):  # faces/<person>/*.pgm, 3 each
        (tmp_path / "faces" / person).mkdir(parents=True)
        for name in ("1.pgm", "4.pgm", "7.pgm"):
            shutil.copy(shared_data / "att_faces" / person / name, tmp_path / "faces" / person / name)
    commands = readme.shell(readme.root, SECTION)
    assert [c.split()[1] for c in commands] == ["extract", "generate", "data"], commands
    named = []
    for command in commands:
        tokens, cards = _without_weights(command)
        named += cards
        proc = run_facerun(*tokens, cwd=tmp_path)
        if tokens[0] in ("extract", "generate"):
            assert "RANDOM weights" in proc.stderr, proc.stderr  # the README promises the warning
        last = proc
    assert named == ["arcface-r100-glint360k", "vec2face-generator"]
    listed = run_facerun("weights", "list", cwd=tmp_path).stdout
    assert all(card in listed for card in named), listed
    info = dict(line.strip().split(": ", 1) for line in last.stdout.splitlines() if ": " in line)
    assert (info["format"], info["samples"], info["identities"]) == ("lmdb", "8", "4"), last.stdout


def test_generate_checks_the_card_before_fetching(run_facerun, tmp_path):
    """--weights CARD on facerun generate applies the card's parameters: a contradicting --param and a card
    of another kind are one-line errors before any download (offline here)."""
    env = {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    base = ["generate", "--generator", "vec2face", "--ids", "2", "--per-id", "1", "--out", str(tmp_path / "g.lmdb")]
    clash = run_facerun(*base, "--weights", "vec2face-generator", "--param", "config=tiny", env=env, check=False)
    assert clash.returncode != 0 and clash.stderr.strip().splitlines() == [
        "Error: generator 'vec2face': parameter config='tiny' contradicts weights 'vec2face-generator', "
        "built with config='base'"
    ], clash.stderr
    other = run_facerun(*base, "--weights", "arcface-r100-glint360k", env=env, check=False)
    assert other.returncode != 0 and "are for backbone 'iresnet100', not generator 'vec2face'" in other.stderr
    assert not (tmp_path / "g.lmdb").exists()
