"""Under torchrun only rank 0 prints the summary and writes the run's reports (issue 24 item 19).

A process that torchrun started as RANK 1 is simulated in-process (RANK=1, no process group): the
recipe still trains, but prints nothing and writes no config/metrics/summary. The DCR DDP test
(tests/dcr/test_ddp.py) checks the same under a real 2-process torchrun."""

from __future__ import annotations

from facerec.engine.distributed import is_main_process
from facerec.recipes import RunDir, run_pipeline

TINY = (
    "backbone.image_size=32",
    "backbone.width=8",
    "dataset.num_ids=6",
    "dataset.per_id=2",
    "train.batch_size=4",
    "train.steps=1",
    "protocol.pairs_per_fold=4",
    "protocol.num_folds=2",
)


def test_rank_from_torchrun_environment(monkeypatch):
    monkeypatch.delenv("RANK", raising=False)
    assert is_main_process()
    monkeypatch.setenv("RANK", "1")
    assert not is_main_process()
    monkeypatch.setenv("RANK", "0")
    assert is_main_process()


def test_rundir_writes_nothing_on_other_ranks(tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    run = RunDir(tmp_path / "run")
    run.write_json("metrics.json", {"a": 1})
    run.write_markdown("summary.md", "title")
    assert not (tmp_path / "run" / "metrics.json").exists()
    assert not (tmp_path / "run" / "summary.md").exists()
    monkeypatch.setenv("RANK", "0")
    run.write_json("metrics.json", {"a": 1})
    assert (tmp_path / "run" / "metrics.json").is_file()


def test_pipeline_reports_only_on_rank0(tmp_path, monkeypatch):
    lines: list[str] = []
    monkeypatch.setenv("RANK", "1")
    metrics = run_pipeline(backbone="small-cnn", out=str(tmp_path / "r1"), params=TINY, echo=lines.append)
    assert metrics["step"] == 1  # it trained
    assert lines == []
    for name in ("config.json", "metrics.json", "summary.md"):
        assert not (tmp_path / "r1" / name).exists(), name
    monkeypatch.setenv("RANK", "0")
    run_pipeline(backbone="small-cnn", out=str(tmp_path / "r0"), params=TINY, echo=lines.append)
    assert any(line.startswith("run directory:") for line in lines)
    for name in ("config.json", "metrics.json", "summary.md"):
        assert (tmp_path / "r0" / name).is_file(), name
