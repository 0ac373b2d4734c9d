"""``mailnet attack`` as a user meets it: per-modality budgets shown where they apply, refused no-op or repeated
budgets, the EOT note, no silent overwrite, how to resume, short mismatch errors, probes for the threat attacked
and a plot title that names the model."""
from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import pytest
import torch

from attack_helpers import TwoModalTwoHead, train_tiny_run, two_modal_batch
from mailnet.attacks.report import records_csv, text_table
from mailnet.attacks.sanity import run_sanity
from mailnet.attacks.subset import rows_from_tensors
from mailnet.attacks.suite import SuiteSettings, run_suite
from mailnet.cli import main
from mailnet.commands.attack import check_output, identity_diff
from mailnet.errors import ConfigError


def _csv_rows(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text)))


def test_csv_and_table_show_per_modality_budgets_and_interruption():
    rec = {"attack": "pgd", "role": "main", "threat": "joint", "perturbed": "all", "eps": 2 / 255, "eps_255": 2.0,
           "eps_per_modality": [2 / 255, 1 / 255], "task": "t", "n": 10, "clean_acc": 0.9, "robust_acc": 0.5}
    rows = _csv_rows(records_csv([rec]))
    assert rows[0]["eps_per_modality_255"] == "2;1" and rows[0]["interrupted"] == "False"
    assert _csv_rows(records_csv([rec], interrupted=True))[0]["interrupted"] == "True"
    assert "per-modality budget 2;1" in text_table([rec], [])
    plain = {**rec, "eps_per_modality": [2 / 255, 2 / 255]}
    assert "per-modality" not in text_table([plain], [])  # no ratio: nothing extra


def test_resume_mismatch_names_only_the_differing_keys():
    old = {"split": "test", "eps_255": [2.0, 8.0], "settings": {"steps": 2, "eot": 2, "seed": 0}}
    now = {"split": "test", "eps_255": [2.0, 4.0], "settings": {"steps": 3, "eot": 4, "seed": 0}}
    assert identity_diff(old, now) == ["eps_255 2,8 -> 2,4", "steps 2 -> 3", "eot 2 -> 4"]
    assert identity_diff(old, old) == []


def test_existing_results_are_not_replaced_unasked(tmp_path):
    check_output(tmp_path, "attack_test", resume=False, overwrite=False)  # nothing there yet
    (tmp_path / "attack_test.csv").write_text("x")
    with pytest.raises(ConfigError, match=r"attack_test.csv already exists: add --resume .* or --overwrite"):
        check_output(tmp_path, "attack_test", resume=False, overwrite=False)
    check_output(tmp_path, "attack_test", resume=False, overwrite=True)
    check_output(tmp_path, "attack_test", resume=True, overwrite=False)


def test_each_threat_runs_the_steps_probe_for_each_modality():
    """The 'more PGD steps' check compares records of the same perturbed modalities: with --threat each alone the
    probe must attack each modality alone, or the check silently disappears."""
    torch.manual_seed(0)
    model = TwoModalTwoHead().eval()
    xs, _ = two_modal_batch(n=8)
    with torch.no_grad():
        ys = [z.argmax(1) for z in model(xs)]
    res = run_suite(model, rows_from_tensors(xs, ys), ["pgd"], [4 / 255], "each",
                    SuiteSettings(steps=5, restarts=1, batch_size=8), modality_names=["gray", "rgb"])
    probes = {r["perturbed"] for r in res.records if r["role"] == "probe" and r["steps"] == 1}
    assert probes == {"gray", "rgb"}
    steps_checks = [c for c in run_sanity(res.records) if c.name == "more PGD steps never help the model"]
    assert len(steps_checks) == 4  # 2 modalities x 2 tasks


@pytest.fixture(scope="module")
def det_run(tmp_path_factory, data_root) -> Path:
    """A tiny trained run of a deterministic model (MAIL without MC dropout) on two real MedMNIST sets."""
    return train_tiny_run(tmp_path_factory.mktemp("detrun"), data_root, "mail", n_test=12,
                          run_dir="exp/seed0")


def test_attack_cli_notes_budgets_overwrite_title_and_resume(det_run, data_root, tmp_path, capsys, monkeypatch):
    import mailnet.attacks.report as report
    import mailnet.attacks.suite as suite

    titles: list[str] = []
    real_plot = report.plot_accuracy_vs_eps
    monkeypatch.setattr(report, "plot_accuracy_vs_eps",
                        lambda *a, title="", **k: (titles.append(title), real_plot(*a, title=title, **k))[1])
    out = tmp_path / "atk"
    cmd = ["attack", str(det_run), "--attack", "reference", "--eps", "2,8", "--eps-ratio", "1,0.5", "--eot", "20",
           "--subset", "4", "--quiet", "--no-sanity", "--data-root", str(data_root), "--device", "cpu",
           "--out", str(out)]
    capsys.readouterr()
    assert main(cmd) == 0
    text = capsys.readouterr().out
    assert "note: the model is deterministic: --eot 20 has no effect, 1 pass per step is used" in text
    assert "per-modality budgets (/255) with --eps-ratio: 2 -> pneumonia 2, breast 1; 8 -> pneumonia 8, breast 4" \
        in text
    assert "per-modality budget 8;4" in text  # under the table
    rows = _csv_rows((out / "attack_test.csv").read_text())
    assert {r["eps_per_modality_255"] for r in rows} == {"2;1", "8;4"} and {r["interrupted"] for r in rows} == {"False"}
    # how each figure was obtained is in the CSV too: the reference attack runs every budget afresh, summed loss
    assert {(r["objective"], r["iterate"], r["carried"]) for r in rows} == {("summed", "last", "False")}
    assert titles and titles[-1].startswith("mail (exp/seed0): test")
    # one attack at one budget without probes: nothing to check, which is said rather than "0/0 passed"
    one = [a if a != "2,8" else "8" for a in cmd[:-1]] + [str(tmp_path / "one")]
    assert main(one) == 0
    assert "sanity checks: none ran (--no-sanity skips the probes, and this table has no pair of results to " \
           "compare" in capsys.readouterr().out
    # a second run into the same folder is refused, naming the file and both ways on
    before = (out / "attack_test.json").read_text()
    assert main(cmd) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "attack_test.json already exists" in err
    assert "--resume" in err and "--overwrite" in err and (out / "attack_test.json").read_text() == before
    # interrupted: the CSV says so, the console says how to continue
    real, calls = suite.attack_correctness, []

    def interrupted_on_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(suite, "attack_correctness", interrupted_on_second)
    assert main(cmd + ["--overwrite"]) == 130
    assert "rerun the same command with --resume to continue" in capsys.readouterr().err
    assert {r["interrupted"] for r in _csv_rows((out / "attack_test.csv").read_text())} == {"True"}
    monkeypatch.setattr(suite, "attack_correctness", real)
    assert main(cmd + ["--resume", "--steps", "3"]) == 2
    err = capsys.readouterr().err
    assert "settings differ from the stored run's: steps 50 -> 3 (" in err and "'restarts'" not in err
    assert main(cmd + ["--resume"]) == 0
    assert "resumed: 1 finished attack unit(s) reused" in capsys.readouterr().out
    assert json.loads((out / "attack_test.json").read_text())["interrupted"] is False


def test_attack_refuses_a_checkpoint_copied_in_from_another_run(det_run, data_root, tmp_path, capsys):
    """Weights trained on pneumonia + retina (5 classes) in a pneumonia + breast run folder: scored, they would
    read a 5-class head against 2-class labels and print a number; the run must be refused instead."""
    (tmp_path / "other").mkdir()
    other = train_tiny_run(tmp_path / "other", data_root, "mail", n_test=8, second=("retina", "retinamnist"))
    mixed = tmp_path / "mixed"
    shutil.copytree(det_run, mixed)
    shutil.rmtree(mixed / "checkpoints")
    shutil.copytree(other / "checkpoints", mixed / "checkpoints")
    capsys.readouterr()
    assert main(["attack", str(mixed), "--attack", "reference", "--eps", "2", "--subset", "4", "--quiet",
                 "--no-sanity", "--data-root", str(data_root), "--device", "cpu", "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "trained for modalities" in err and "retina" in err and "breast" in err
    assert not (tmp_path / "a").exists()
