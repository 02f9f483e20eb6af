"""The README's quickstart 3 (the main job), read from README.md and run as a user runs it, with step
counts cut to seconds (the 2-minute quick preset itself is not repeated here)."""

from __future__ import annotations

SECTION = "The main job: DVG-Face"
MAIN_JOB = "facerun --backbone lightcnn29 --generator dvg"
TINY = [
    "--param",
    "train.steps=2",
    "--param",
    "recipe.batch_size=8",
    "--param",
    "recipe.sampler_steps=3",
    "--param",
    "recipe.generator_steps=2",
    "--param",
    "recipe.generator_batch=4",
    "--param",
    "recipe.num_pairs=12",
    "--param",
    "dataset.num_ids=8",
    "--param",
    "protocol.num_ids=8",
    "--param",
    "protocol.nir_per_id=2",
]


def test_readme_main_job_runs(readme, tmp_path):
    commands = readme.shell(readme.root, SECTION)
    assert commands == [MAIN_JOB]
    # the install line at the top of the README ends with the same command
    install = readme.root.read_text(encoding="utf-8").split("```bash\n", 1)[1].split("\n```", 1)[0]
    assert install.startswith("python3 -m venv .venv") and install.endswith(f".venv/bin/{MAIN_JOB}")
    readme.run(commands, {}, cwd=tmp_path, extra={"facerun --backbone": [*TINY, "--out", "run"]})
    run = tmp_path / "run"
    assert (run / "metrics.json").is_file() and (run / "summary.md").is_file()
