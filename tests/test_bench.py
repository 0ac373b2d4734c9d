"""``mailnet bench``: suite validation, stable run keys, the generated BENCHMARKS block, and a real tiny suite
through the CLI (train, attack, profile, report), rerun to prove finished work is reused, never redone."""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
import yaml

from attack_helpers import interrupt_on_call

from mailnet.bench.hashing import config_hash
from mailnet.bench.report import (BEGIN, END, attack_label, compute_spent, fmt_ms, machines_summary, robust_cells,
                                   update_marked_block)
from mailnet.bench.suite import load_suite
from mailnet.cli import main
from mailnet.errors import ConfigError, MailnetError

DATA = {
    "mode": "unpaired", "size": 28, "equalize": "repeat",
    "modalities": [{"name": "pneumonia", "source": "medmnist", "flag": "pneumoniamnist", "channels": 3},
                   {"name": "breast", "source": "medmnist", "flag": "breastmnist", "channels": 3}],
}
TINY_MAIL = {"name": "mail", "label": "mail_tiny", "kwargs": {"widths": [8, 8, 16, 16]}}


def suite_dict(**changes) -> dict:
    suite = {
        "name": "t",
        "base": {"model": {"name": "mail", "kwargs": {"stem": "imagenet"}}, "data": DATA,
                 "train": {"epochs": 1, "batch_size": 16, "max_steps_per_epoch": 2, "lr": 1.0e-3},
                 "eval": {"batch_size": 64, "mc_samples": 1, "partner_draws": 1, "partner_bank": 2}},
        "compositions": [{"name": "pb", "data": DATA}],
        "data": {"subset": {"train": 32, "val": 16, "test": 24}},
        "models": [TINY_MAIL],
        "seeds": [0],
        "attacks": {"names": ["pgd"], "eps": ["4/255"], "steps": 1, "restarts": 1, "eot": 1, "subset": 8,
                    "batch_size": 64, "options": {"sanity": False}},
        "cost": {"threads": 1, "batch": 4, "latency_iters": 1, "batch_iters": 1, "warmup": 0},
    }
    suite.update(changes)
    return suite


def write_suite(tmp_path: Path, suite: dict, name: str = "suite.yaml") -> Path:
    p = tmp_path / name
    p.write_text(yaml.safe_dump(suite, sort_keys=False))
    return p


# ------------------------------------------------------------------------------------------------------ parsing


@pytest.mark.parametrize("change, expected", [
    ({"modelz": ["mail"]}, "modelz: unknown suite key"),
    ({"attacks": {"stepz": 3}}, "attacks.stepz: unknown suite key"),
    ({"attacks": {"names": ["pgdd"]}}, "unknown attack 'pgdd'"),
    ({"attacks": {"options": {"threatt": "each"}}}, "attacks.options.threatt"),
    ({"attacks": {"eps": ["four"]}}, "attacks.eps"),
    ({"cost": {"threads": 0}}, "cost.threads: must be a positive integer"),
    ({"models": ["no_such_model"]}, "unknown model 'no_such_model'"),
    ({"models": [{"name": "mail", "kwarg": {}}]}, "models[0].kwarg: unknown suite key"),
    ({"models": ["mail", "mail"]}, "label 'mail' appears twice"),
    ({"seeds": [0, 0]}, "repeats a seed"),
    ({"seeds": "0,1"}, "seeds: must be a non-empty list"),
    ({"compositions": [{"name": "x"}]}, "give exactly one of config"),
    ({"compositions": ["configs/nope.yaml"]}, "file 'configs/nope.yaml' not found"),
    ({"config": {"train": {"epoch": 3}}}, "train.epoch: unknown config key"),
    ({"data": {"sise": 28}}, "data.sise: unknown key"),
    ({"base": None}, "base: missing"),
    ({"save_results": "yes"}, "save_results: must be true or false"),
    ({"config": {"train": {"loss_weights": [1, 1, 1]}}}, "3 weights for 2 modalities"),
    ({"compositions": [{"name": "x", "data": DATA, "overrides": {"data": {}}}]}, "overrides: put data settings"),
])
def test_invalid_suites_fail_with_one_line(tmp_path, change, expected):
    path = write_suite(tmp_path, suite_dict(**change))
    with pytest.raises(ConfigError) as e:
        load_suite(path)
    msg = str(e.value)
    assert expected in msg and "\n" not in msg and str(path) in msg


def test_quick_section_is_required_and_merged(tmp_path):
    path = write_suite(tmp_path, suite_dict())
    with pytest.raises(ConfigError, match="no quick: section"):
        load_suite(path, quick=True)
    quick = {"data": {"subset": {"train": 16}}, "config": {"train": {"max_steps_per_epoch": 1}},
             "attacks": {"steps": 2}, "seeds": [3]}
    path = write_suite(tmp_path, suite_dict(quick=quick))
    full, small = load_suite(path), load_suite(path, quick=True)
    (jf,), (js,) = full.jobs(), small.jobs()
    assert js.cfg["data"]["subset"] == {"train": 16, "val": 16, "test": 24}  # merged key by key, not replaced
    assert js.cfg["train"]["max_steps_per_epoch"] == 1 and js.seed == 3 and small.attacks["steps"] == 2
    assert small.attacks["eps"] == full.attacks["eps"] and jf.cfg["train"]["max_steps_per_epoch"] == 2


def test_repository_suites_parse():
    repo = Path(__file__).resolve().parents[1]
    for name in ("quick", "cpu", "paper"):
        suite = load_suite(repo / "benchmarks" / f"{name}.yaml")
        assert suite.jobs() and suite.has_quick
        assert load_suite(repo / "benchmarks" / f"{name}.yaml", quick=True).jobs()
    cpu = load_suite(repo / "benchmarks" / "cpu.yaml")
    from mailnet.models import list_models

    assert {m.name for m in cpu.models} == set(list_models()) and len(cpu.seeds) == 3


# ------------------------------------------------------------------------------------------------------ hashing


def test_hash_is_stable_and_sensitive(tmp_path):
    a = load_suite(write_suite(tmp_path, suite_dict(), "a.yaml")).jobs()[0]
    # the same settings written in another key order, another suite name and another output folder
    s = suite_dict(name="other", config={"output": {"dir": "elsewhere"}})
    s["base"] = dict(reversed(list(s["base"].items())))
    b = load_suite(write_suite(tmp_path, s, "b.yaml")).jobs()[0]
    assert a.cfg["name"] != b.cfg["name"] and a.cfg["output"] != b.cfg["output"]
    assert a.key == b.key == config_hash(json.loads(json.dumps(a.cfg)))
    lr = load_suite(write_suite(tmp_path, suite_dict(config={"train": {"lr": 2.0e-3}}), "c.yaml")).jobs()[0]
    seed = load_suite(write_suite(tmp_path, suite_dict(seeds=[1]), "d.yaml")).jobs()[0]
    widths = load_suite(write_suite(tmp_path, suite_dict(models=[{**TINY_MAIL, "kwargs": {"widths": [8, 8, 8, 8]}}]),
                                    "e.yaml")).jobs()[0]
    assert len({a.key, lr.key, seed.key, widths.key}) == 4


# ------------------------------------------------------------------------------------------------------ BENCHMARKS


def test_update_marked_block_touches_only_the_block(tmp_path):
    f = tmp_path / "BENCHMARKS.md"
    head = "# Benchmarks\n\nhand-written text\n"
    f.write_text(head)
    update_marked_block(f, "first")
    text = f.read_text()
    assert text.startswith(head) and text.endswith(f"{BEGIN}\nfirst\n{END}\n")
    f.write_text(text + "\n## Later hand-written section\n")
    update_marked_block(f, "second\ntable")
    text = f.read_text()
    assert text == head + f"\n{BEGIN}\nsecond\ntable\n{END}\n\n## Later hand-written section\n"
    f.write_text(head + BEGIN + "\n")
    with pytest.raises(MailnetError, match="markers"):
        update_marked_block(f, "x")


# ------------------------------------------------------------------------------------------------------ real run


def _rows(path: Path) -> list[dict]:
    with open(path) as fh:
        return list(csv.DictReader(fh))


def test_tiny_bench_runs_reports_and_reuses(tmp_path, data_root, capsys):
    suite = write_suite(tmp_path, suite_dict(seeds=[0, 1]))
    out, results = tmp_path / "out", tmp_path / "results"
    argv = ["bench", str(suite), "--out", str(out), "--data-root", str(data_root), "--device", "cpu",
            "--results-dir", str(results), "--save-results", "--no-progress"]
    assert main(argv) == 0
    first = capsys.readouterr().out
    assert first.count("[trained]") == 2 and first.count("[attacked]") == 2 and first.count("[profiled]") == 1

    report = (out / "report.md").read_text()
    for needle in ("## Accuracy", "pneumonia ACC", "breast AUC", "±", "## Robust accuracy", "ε=4/255",
                   "## Cost", "mail_tiny", "Git commit", "torch ", "Command**: `mailnet bench",
                   "EOT 1 (random models; a deterministic one needs 1 pass)", "; options: sanity False"):
        assert needle in report, needle
    # which files served the images: the config names a flag and a size, the record the file actually read
    assert "**Images read from**: `breastmnist.npz` (28 px): 2 runs; `pneumoniamnist.npz` (28 px): 2 runs" in report
    for chart in ("accuracy_vs_macs", "accuracy_vs_latency", "robust_accuracy_vs_eps", "training_curves"):
        png = out / "charts" / f"{chart}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", chart
    rows = _rows(out / "results.csv")
    kinds = {r["kind"] for r in rows}
    assert {"test", "history", "attack", "cost"} <= kinds
    accs = [float(r["value"]) for r in rows if r["kind"] == "test" and r["metric"] == "acc"]
    assert len(accs) == 4 and all(0.0 <= a <= 1.0 for a in accs)  # 2 seeds x 2 tasks
    robust = [r for r in rows if r["metric"] == "robust_acc"]
    assert len(robust) == 4 and all(0.0 <= float(r["value"]) <= 1.0 for r in robust)
    balanced = [r for r in rows if r["metric"] == "robust_bal_acc"]  # the same attacks, as balanced accuracy
    assert [(r["key"], r["task"]) for r in balanced] == [(r["key"], r["task"]) for r in robust]
    assert "Balanced accuracy (mean per-class accuracy; answering one class everywhere scores 1 / classes" in report
    saved = sorted(p.name for p in results.iterdir())
    assert len([n for n in saved if not n.startswith("cost-")]) == 2 and any(n.startswith("cost-") for n in saved)
    assert not any(p.suffix == ".safetensors" for p in results.rglob("*"))

    # rerun: everything reused, nothing trained; the run directories are untouched
    finished = sorted((out / "runs").glob("*/FINISHED"))
    stamps = [p.stat().st_mtime_ns for p in finished]
    assert main(argv) == 0
    second = capsys.readouterr().out
    assert "[trained]" not in second and "[attacked]" not in second and "[profiled]" not in second
    assert second.count("[reused]") == 5  # 2 runs + 2 attack results + 1 cost
    assert [p.stat().st_mtime_ns for p in finished] == stamps
    assert "measured on" not in second  # the same machine measured the cost

    # a cost record measured on another CPU is still reused (timings are expensive) but the log says so
    for path in [*results.glob("cost-*.json"), *(out / "cost").glob("*.json")]:
        cost = json.loads(path.read_text())
        cost["machine"]["cpu"] = "Another CPU 9000"
        path.write_text(json.dumps(cost))
    assert main(argv) == 0
    assert "measured on Another CPU 9000, not this machine's" in capsys.readouterr().out

    # a record measured on other files than this data root now holds (say 64 px breast images, since replaced)
    # is still reused, with a note in the log and the report
    stored = sorted((out / "records").iterdir())
    rec = json.loads(stored[0].read_text())
    breast = next(d for d in rec["data_sources"] if d["modality"] == "breast")
    assert (breast["file"], breast["native_size"], breast["img_size"]) == ("breastmnist.npz", 28, 28)
    breast.update(file="breastmnist_64.npz", native_size=64)
    stored[0].write_text(json.dumps(rec))
    assert main(argv) == 0
    log = capsys.readouterr().out
    assert log.count("[note]") == 1 and "breast: breastmnist_64.npz (64 px), now breastmnist.npz (28 px)" in log
    assert "[trained]" not in log and "it was reused: train it again" in (out / "report.md").read_text()

    # so is a record whose model was built with another default than the builder has now (the checkpoint wrote out
    # every argument; the config hash covers only those set): the note names the argument and both values
    spec = rec["model_spec"]
    assert spec["kwargs"]["widths"] == [8, 8, 16, 16] and spec["kwargs"]["drop_rate"] == 0.25
    spec["kwargs"]["drop_rate"] = 0.5
    stored[0].write_text(json.dumps(rec))
    assert main(argv) == 0
    log = capsys.readouterr().out
    assert "[trained]" not in log and log.count("[note]") == 2
    assert "other model defaults (drop_rate: 0.5 in the record, 0.25 now)" in log

    # a run directory that finished but lost its record (interrupted right after training) is reused too
    for rec in (out / "records").iterdir():
        rec.unlink()
    argv3 = argv[:-4] + ["--results-dir", str(tmp_path / "empty"), "--no-save-results", "--no-progress"]
    assert main(argv3) == 0
    third = capsys.readouterr().out
    assert "[trained]" not in third and third.count("finished run") == 2
    assert third.count("[attacked]") == 2  # attack results lived in the lost records; the weights are still there

    # runs trained outside the bench (any folder layout) are found by their resolved config
    elsewhere = tmp_path / "elsewhere"
    for i, run in enumerate(sorted((out / "runs").iterdir())):
        shutil.copytree(run, elsewhere / "pb" / f"seed{i}")
    env_file = elsewhere / "pb" / "seed0" / "environment.json"  # as if trained on another machine
    env = json.loads(env_file.read_text())
    env["sittings"][-1]["cpu"] = "Elsewhere CPU 9000"
    env_file.write_text(json.dumps(env))
    out_imp = tmp_path / "out_imported"
    train_only = write_suite(tmp_path, suite_dict(seeds=[0, 1], attacks=None, cost=None), "train_only.yaml")
    assert main(["bench", str(train_only), "--out", str(out_imp), "--results-dir", str(tmp_path / "empty"),
                 "--no-save-results", "--import-runs", str(elsewhere), "--no-progress"]) == 0
    imported = capsys.readouterr().out
    assert "[trained]" not in imported and imported.count("(imported)") == 2 and not (out_imp / "runs").exists()
    assert "Elsewhere CPU 9000 / GPU none / device cpu (1 run" in (out_imp / "report.md").read_text()
    assert not (tmp_path / "empty").exists()

    # another sitting, another output folder: the committed records alone rebuild the report
    out2 = tmp_path / "out2"
    bench_md = tmp_path / "BENCHMARKS.md"
    bench_md.write_text("# Benchmarks\n\nkept as is\n")
    assert main(["bench", str(suite), "--out", str(out2), "--results-dir", str(results), "--report-only",
                 "--update-benchmarks", str(bench_md)]) == 0
    fourth = capsys.readouterr().out
    assert "[trained]" not in fourth and "[missing]" not in fourth and not (out2 / "runs").exists()
    rebuilt = _rows(out2 / "results.csv")
    assert sorted(r["value"] for r in rebuilt if r["kind"] == "test") == \
        sorted(r["value"] for r in rows if r["kind"] == "test")
    md = bench_md.read_text()
    assert md.startswith("# Benchmarks\n\nkept as is\n") and BEGIN in md and "from commit" in md
    assert "### Accuracy" in md  # the report's headings, one level down
    # the charts are copied beside the file (the work folder is not committed) and shown from there
    published = sorted(c.name for c in (tmp_path / "benchmarks" / "charts" / "t").glob("*.png"))
    assert published and published == sorted(c.name for c in (out2 / "charts").glob("*.png"))
    assert all(f"](benchmarks/charts/t/{name})" in md for name in published) and "Charts: `" not in md

    # results stored before heads were attacked one by one carry no objective: the report says so
    assert "summed the loss" not in report
    old = next(p for p in sorted(results.iterdir()) if not p.name.startswith("cost-"))
    rec = json.loads(old.read_text())
    for entry in rec["attacks"].values():
        assert entry["suite_settings"].pop("objective") == "per-task"
    old.write_text(json.dumps(rec))
    assert main(["bench", str(suite), "--out", str(tmp_path / "out3"), "--results-dir", str(results),
                 "--report-only"]) == 0
    capsys.readouterr()
    mixed = (tmp_path / "out3" / "report.md").read_text()
    assert "Gradient attacks on 1 of 2 attacked runs summed the loss" in mixed
    # the two bookkeepings are never averaged together: the summed run's PGD rows stand apart, labelled
    summed_rows = [ln for ln in mixed.splitlines() if ln.startswith("| mail_tiny | pgd (summed loss) |")]
    per_head_rows = [ln for ln in mixed.splitlines() if ln.startswith("| mail_tiny | pgd |")]
    assert summed_rows and per_head_rows and len(summed_rows) == len(per_head_rows)
    assert all("±" not in ln.split("|")[5] for ln in summed_rows + per_head_rows)  # one seed each, no spread
    objectives = {(r["attack"], r["objective"]) for r in _rows(tmp_path / "out3" / "results.csv") if r["kind"] == "attack"}
    assert objectives == {("pgd (summed loss)", "summed"), ("pgd", "per-task")}  # the CSV keeps them apart too
    assert "attacked with the loss summed over heads" in _listing(suite, results, tmp_path / "out3", capsys)

    # --reattack-summed measures such a run again, head by head (trained again: this output folder has no weights),
    # and replaces its results; the other run and a second pass are left alone
    redo = ["bench", str(suite), "--out", str(tmp_path / "out4"), "--data-root", str(data_root), "--device", "cpu",
            "--results-dir", str(results), "--save-results", "--no-progress", "--reattack-summed"]
    assert main(redo) == 0
    fifth = capsys.readouterr().out
    assert fifth.count("[re-attacked]") == 1 and "[attacked]" not in fifth and fifth.count("[checked]") == 1
    assert "summed the loss" not in (tmp_path / "out4" / "report.md").read_text()
    assert all(e["suite_settings"]["objective"] == "per-task" for e in json.loads(old.read_text())["attacks"].values())
    assert main(redo) == 0
    assert "attacked]" not in capsys.readouterr().out


def _listing(suite: Path, results: Path, out: Path, capsys) -> str:
    assert main(["bench", str(suite), "--out", str(out), "--results-dir", str(results), "--list"]) == 0
    return capsys.readouterr().out


def test_a_stored_record_is_attacked_only_on_the_weights_it_describes(tmp_path, data_root, capsys):
    """A record without its weights (another sitting) is attacked after training again; the attack results must
    then describe the weights the record's metrics came from, checked by fingerprint (or, for records stored
    before fingerprints, by the test metrics), else the record is replaced by the new run's."""
    suite = write_suite(tmp_path, suite_dict())
    results = tmp_path / "results"
    base = ["bench", str(suite), "--data-root", str(data_root), "--device", "cpu", "--results-dir", str(results),
            "--save-results", "--no-progress"]
    assert main(base + ["--out", str(tmp_path / "out0")]) == 0
    capsys.readouterr()
    (path,) = [p for p in results.iterdir() if not p.name.startswith("cost-")]
    original = json.loads(path.read_text())
    assert len(original["weights_sha256"]) == 64

    def sitting(name: str, change) -> tuple[str, dict]:
        rec = json.loads(json.dumps(original))
        rec["attacks"] = {}
        change(rec)
        path.write_text(json.dumps(rec))
        assert main(base + ["--out", str(tmp_path / name)]) == 0  # a fresh folder: no weights, no records
        return capsys.readouterr().out, json.loads(path.read_text())

    out, rec = sitting("same", lambda r: None)
    assert "[checked]" in out and "same fingerprint" in out and "[replaced]" not in out and "[attacked]" in out
    assert rec["test"] == original["test"] and rec["attacks"]

    out, rec = sitting("legacy", lambda r: r.pop("weights_sha256"))
    assert "[checked]" in out and "same test metrics" in out and "[attacked]" in out
    assert rec["weights_sha256"] == original["weights_sha256"]

    def other_weights(r):
        r["weights_sha256"] = "0" * 64
        r["test"]["mean_acc"] = 0.123
    out, rec = sitting("other", other_weights)
    assert "[replaced]" in out and "differ from the stored record" in out and "[attacked]" in out
    assert rec["weights_sha256"] == original["weights_sha256"] and rec["test"] == original["test"] and rec["attacks"]

    def legacy_other(r):
        r.pop("weights_sha256")
        r["test"]["mean_acc"] = 0.123
    out, rec = sitting("legacy_other", legacy_other)
    assert "[replaced]" in out and "(test metrics)" in out and rec["test"] == original["test"]


def test_a_finished_run_whose_weights_were_deleted_is_trained_again_to_be_attacked(tmp_path, data_root, capsys):
    """Deleting a finished run's checkpoints to save disk must not leave the bench stuck: the attack needs weights,
    so the run is trained again (and checked against its record) instead of being reused without them."""
    suite = suite_dict()
    suite["attacks"]["eps"] = ["2/255"]
    first = write_suite(tmp_path, suite_dict(attacks={**suite["attacks"], "eps": ["4/255"]}), "first.yaml")
    second = write_suite(tmp_path, suite, "second.yaml")
    base = ["--data-root", str(data_root), "--device", "cpu", "--no-progress", "--out", str(tmp_path / "out"),
            "--results-dir", str(tmp_path / "results")]
    assert main(["bench", str(first)] + base) == 0
    (run,) = [p for p in (tmp_path / "out" / "runs").iterdir()]
    shutil.rmtree(run / "checkpoints")
    capsys.readouterr()
    assert main(["bench", str(second)] + base) == 0  # other attack settings: the stored record has no results
    out = capsys.readouterr().out
    assert "[trained]" in out and "weights needed for the attack" in out and "[checked]" in out
    assert "[attacked]" in out and (run / "checkpoints" / "best.safetensors").is_file()


def test_an_interrupted_attack_resumes_in_the_next_sitting(tmp_path, data_root, capsys, monkeypatch):
    """Attack progress is stored unit by unit in the record, so a sitting that ends mid-attack (hours for a random
    model on a CPU) loses only the unit in flight; the next sitting keeps what finished on the same weights."""
    import mailnet.attacks.suite as attack_suite

    attacks = {"names": ["pgd", "reference"], "eps": ["2/255", "4/255"], "steps": 1, "restarts": 1, "eot": 1,
               "subset": 8, "batch_size": 64, "options": {"sanity": False}}
    suite = write_suite(tmp_path, suite_dict(attacks=attacks, cost=None))
    results = tmp_path / "results"
    argv = ["bench", str(suite), "--data-root", str(data_root), "--device", "cpu", "--results-dir", str(results),
            "--save-results", "--no-progress"]
    real = attack_suite.attack_correctness
    monkeypatch.setattr(attack_suite, "attack_correctness", interrupt_on_call(real, 4))
    assert main(argv + ["--out", str(tmp_path / "first")]) == 130
    capsys.readouterr()
    monkeypatch.setattr(attack_suite, "attack_correctness", real)
    (path,) = list(results.iterdir())
    rec = json.loads(path.read_text())
    assert not rec["attacks"] and len(rec["attacks_partial"]) == 1
    (partial,) = rec["attacks_partial"].values()
    units = [r["unit"] for r in partial["records"]]
    assert len(set(units)) == 3 and partial["weights_sha256"] == rec["weights_sha256"]  # pgd 2, pgd 4, reference 2

    report_only = ["bench", str(suite), "--out", str(tmp_path / "ro"), "--results-dir", str(results), "--report-only"]
    assert main(report_only) == 0
    capsys.readouterr()
    assert "trained, attack results missing (3 attack units stored" in (tmp_path / "ro" / "report.md").read_text()
    assert main(report_only[:-1] + ["--list"]) == 0
    listing = capsys.readouterr().out
    assert "trained, attack partly done (3 units)" in listing
    # no weights in this folder: trained again, then attacked; no finished attack tells how many units are left
    assert "left: 1 run to train, 1 run to attack" in listing and "nothing measured yet for: pb/mail_tiny" in listing

    # the next sitting: another output folder (no weights), so the run is trained again, checked, and resumed
    assert main(argv + ["--out", str(tmp_path / "second")]) == 0
    out = capsys.readouterr().out
    assert "[checked]" in out and "[resuming]" in out and "3 attack units" in out and "[attacked]" in out
    rec = json.loads(path.read_text())
    assert "attacks_partial" not in rec
    (entry,) = rec["attacks"].values()
    assert len({r["unit"] for r in entry["records"]}) == 4 and entry["seconds"] > partial["seconds"]


def test_report_only_lists_missing_runs(tmp_path):
    suite = write_suite(tmp_path, suite_dict())
    out = tmp_path / "out"
    assert main(["bench", str(suite), "--out", str(out), "--results-dir", str(tmp_path / "none"),
                 "--report-only"]) == 0
    report = (out / "report.md").read_text()
    assert "## Missing runs" in report and "pb/mail_tiny/seed0" in report
    assert "0/1 runs trained, 0 of them attacked" in report


def test_only_runs_the_selected_jobs_and_reports_the_whole_suite(tmp_path, data_root, capsys):
    suite = write_suite(tmp_path, suite_dict(seeds=[0, 1], attacks=None, cost=None))
    out = tmp_path / "out"
    base = ["bench", str(suite), "--out", str(out), "--data-root", str(data_root), "--device", "cpu",
            "--results-dir", str(tmp_path / "none"), "--no-save-results", "--no-progress"]
    assert main(base + ["--only", "pb/*/seed1"]) == 0
    printed = capsys.readouterr().out
    assert "(1 selected by --only)" in printed and printed.count("[trained]") == 1
    assert "[trained] pb/mail_tiny/seed1" in printed and "[missing] pb/mail_tiny/seed0" in printed
    report = (out / "report.md").read_text()
    assert "1/2 runs trained (missing" in report and "pb/mail_tiny/seed0" in report.split("## Missing runs")[1]
    assert "--only 'pb/*/seed1'" in report  # the command as it ran
    assert main(base + ["--only", "pb/*/seed0", "--list"]) == 0
    listing = capsys.readouterr().out
    assert "pb/mail_tiny/seed0" in listing and "pb/mail_tiny/seed1" not in listing
    assert "left: 1 run to train" in listing  # the estimate covers the selected runs only
    assert main(base + ["--only", "retina/*"]) == 2
    assert "--only retina/*: matches none of the suite's runs (labels look like pb/mail_tiny/seed0)" in \
        capsys.readouterr().err


@pytest.mark.parametrize("kwargs, expected", [
    ({"widths": [8, 0, 16, 16]}, "widths must be an int or a non-empty list of integers >= 1"),
    ({"widthz": [8, 8, 16, 16]}, "unknown argument(s) widthz"),
])
def test_a_bad_model_kwarg_fails_when_the_bench_starts_not_when_its_job_is_reached(tmp_path, capsys, kwargs,
                                                                                     expected):
    bad = {"name": "mail", "label": "mail_bad", "kwargs": kwargs}
    suite = write_suite(tmp_path, suite_dict(models=[TINY_MAIL, bad]))
    out = tmp_path / "out"
    assert main(["bench", str(suite), "--device", "cpu", "--no-progress", "--out", str(out),
                 "--results-dir", str(tmp_path / "results")]) == 2
    err = capsys.readouterr().err.strip()
    assert "job pb/mail_bad: model mail with kwargs" in err and expected in err and len(err.splitlines()) == 1
    assert not (out / "runs").exists()  # the good model before it was not trained first
    assert main(["bench", str(suite), "--list", "--out", str(out), "--results-dir", str(tmp_path / "results")]) == 2
    assert expected in capsys.readouterr().err  # --list builds the models too: the typo shows before any run
    # rebuilding a report builds no model: it still works from what the results hold
    assert main(["bench", str(suite), "--report-only", "--out", str(out), "--results-dir",
                 str(tmp_path / "results")]) == 0


def test_rows_of_the_older_bookkeeping_are_labelled_apart():
    new = {"objective": "per-task", "legacy": False, "random_model": False}
    old = {"objective": "summed", "legacy": True, "random_model": False}
    assert attack_label({"attack": "pgd", **new}) == "pgd"
    assert attack_label({"attack": "pgd", **old}) == "pgd (summed loss)"
    assert attack_label({"attack": "pgd", **new, "objective": "summed"}) == "pgd (summed loss)"  # asked for
    assert attack_label({"attack": "reference", **new, "objective": "summed"}) == "reference"  # sums by definition
    assert attack_label({"attack": "reference", **old}) == "reference (carried over budgets)"
    assert attack_label({"attack": "reference", **old, "random_model": True}) == "reference"  # never carried over


def test_clean_accuracy_spread_is_over_seeds_not_budgets():
    """Each budget's row repeats the clean accuracy of the same samples; a single seed must show one value, not a
    spread of 0 over its budgets, and several seeds their spread."""
    def record(clean: float) -> dict:
        rows = [{"attack": "pgd", "task": "t", "eps": e, "robust_acc": r, "clean_acc": clean}
                for e, r in (("2/255", 0.5), ("4/255", 0.25))]
        return {"attacks": {"k": {"suite_settings": {"objective": "per-task"}, "rows": rows}}}

    one = robust_cells({"m": [record(0.75)]}, "k")[("m", "pgd", "t")]
    assert one["clean"] == [0.75] and fmt_ms(one["clean"], 3) == "0.750"
    two = robust_cells({"m": [record(0.75), record(0.25)]}, "k")[("m", "pgd", "t")]
    assert fmt_ms(two["clean"], 3) == "0.500 ± 0.250" and two["4/255"] == [0.25, 0.25]


def test_balanced_robust_cells_read_the_balanced_fields_and_skip_rows_without_them():
    """A record of an earlier mailnet has no balanced accuracy: its rows are left out of the balanced table (not
    counted as 0 or read as accuracy), while the accuracy table keeps them."""
    rows = [{"attack": "pgd", "task": "t", "eps": "4/255", "robust_acc": 0.6, "clean_acc": 0.7,
             "robust_bal_acc": 0.5, "clean_bal_acc": 0.65}]
    new = {"attacks": {"k": {"suite_settings": {"objective": "per-task"}, "rows": rows}}}
    old = {"attacks": {"k": {"suite_settings": {"objective": "per-task"},
                             "rows": [{"attack": "pgd", "task": "t", "eps": "4/255", "robust_acc": 0.2,
                                       "clean_acc": 0.3}]}}}
    cell = robust_cells({"m": [new, old]}, "k", "robust_bal_acc")[("m", "pgd", "t")]
    assert cell["4/255"] == [0.5] and cell["clean"] == [0.65]
    assert robust_cells({"m": [new, old]}, "k")[("m", "pgd", "t")]["4/255"] == [0.6, 0.2]
    assert robust_cells({"m": [old]}, "k", "robust_bal_acc") == {}


def test_machines_summary_names_each_machine_once_with_run_count_and_load_range():
    """The report header lists every machine that trained runs; one entry per run (the old form) repeated the same
    machine 33 times with a different load each."""
    cpu = {"cpu": "AMD EPYC", "gpu": None, "device": "cpu"}
    gpu = {"cpu": "Intel Xeon", "gpu": "NVIDIA H200", "device": "cuda"}
    machines = [{**cpu, "load_average": [2.5, 2.0, 1.0]}, {**cpu, "load_average": [1.0, 1.0, 1.0]},
                {**cpu, "load_average": [4.12, 3.0, 3.0]}, {**gpu, "load_average": None}]
    assert machines_summary(machines) == (
        "AMD EPYC / GPU none / device cpu (3 runs, 1-minute load average when stored 1.00-4.12); "
        "Intel Xeon / GPU NVIDIA H200 / device cuda (1 run)")
    assert machines_summary([{**cpu, "load_average": [1.5, 1, 1]}]) == (
        "AMD EPYC / GPU none / device cpu (1 run, 1-minute load average when stored 1.50)")
    assert machines_summary([]) == ""


def test_commits_summary_says_the_rows_come_from_several_versions_of_the_code():
    from mailnet.bench.report import commits_summary

    machines = [{"git_commit": "a" * 40}] * 3 + [{"git_commit": "b" * 40 + "+dirty"}] + [{"git_commit": None}] + \
        [{"git_commit": c * 40} for c in "cde"]
    text = commits_summary(machines, shown=3)
    assert text.startswith("6 commits of mailnet (`aaaaaaa` (3), `bbbbbbb+dirty` (1), `ccccccc` (1), 3 more;")
    assert commits_summary([{"git_commit": "f" * 40}]).startswith("1 commit of mailnet (`fffffff` (1);")
    assert commits_summary([]) == ""


def test_sources_summary_says_when_images_were_upsampled_and_counts_older_records():
    from mailnet.bench.report import sources_summary

    up = {"data_sources": [{"modality": "a", "file": "pneumoniamnist.npz", "native_size": 28, "img_size": 128},
                           {"modality": "b", "file": "breastmnist_128.npz", "native_size": 128, "img_size": 128}]}
    text = sources_summary([up, up, {"key": "old"}])
    assert text == ("`breastmnist_128.npz` (128 px): 2 runs; `pneumoniamnist.npz` (28 px, upsampled to 128 px): "
                    "2 runs; 1 record from before records named their files")
    assert sources_summary([{"key": "old"}]) == ""


def test_compute_spent_sums_the_records_seconds():
    recs = [{"train_seconds": 1800.0, "attacks": {"k": {"seconds": 3600.0}}},
            {"train_seconds": 5400.0, "attacks": {"other": {"seconds": 99999.0}}},  # another suite's attack
            {"train_seconds": None}]
    assert compute_spent(recs, "k") == (
        "2.0 h of training over 3 runs, 1.0 h of attacks over 1 run "
        "(sum of the seconds stored in the runs' records, whatever the machine and load)")
    assert compute_spent(recs, None).startswith("2.0 h of training over 3 runs (")
    assert compute_spent([], "k") == ""


def test_estimate_left_uses_measured_peers_then_units_and_names_the_rest():
    from mailnet.bench.estimate import Pending, estimate_left

    def unit_rows(names):
        return [{"unit": u, "task": t} for u in names for t in ("a", "b")]

    records = [
        # finished peers: training 1000 / 3000 s, attack 7200 s (4 units); an older record without units
        {"composition": "c2", "model": "m", "train_seconds": 1000.0,
         "attacks": {"k": {"seconds": 7200.0, "records": unit_rows("wxyz")}}},
        {"composition": "c2", "model": "m", "train_seconds": 3000.0,
         "attacks": {"k": {"seconds": 7200.0, "records": [{"task": "a"}]}}},
        # an unfinished sitting on the other composition: 2 units in 3600 s
        {"composition": "c3", "model": "m", "train_seconds": 1800.0,
         "attacks_partial": {"k": {"seconds": 3600.0, "records": unit_rows("wx")}}},
    ]
    pending = [Pending("c2", "m", train=True, attack=True, attack_done_s=0.0),     # 2000 + 7200
               Pending("c3", "m", train=False, attack=True, attack_done_s=3600.0),  # 1800 * 4 - 3600
               Pending("c3", "m", train=True, attack=True, attack_done_s=0.0),      # 1800 + 1800 * 4
               Pending("c9", "other", train=True, attack=True, attack_done_s=0.0)]  # nothing measured
    line = estimate_left(pending, records, "k")
    hours = (2000 + 7200 + 3600 + 1800 + 7200) / 3600
    assert line.startswith(f"left: 3 runs to train, 4 runs to attack; about {hours:.1f} h of compute"), line
    assert f"training {3800 / 3600:.1f} h, attacks {18000 / 3600:.1f} h" in line
    assert line.endswith("nothing measured yet for: c9/other")
    assert estimate_left([], records, "k") == "nothing left: every run is trained and attacked"
    assert estimate_left(pending[-1:], [], "k") == ("left: 1 run to train, 1 run to attack; no estimate of the "
                                                   "compute yet (nothing of this suite has finished to measure it by)")


def test_publish_charts_copies_the_reports_charts_and_drops_stale_ones(tmp_path):
    from mailnet.bench.report import publish_charts

    (tmp_path / "work" / "charts").mkdir(parents=True)
    for name in ("accuracy_vs_macs.png", "training_curves.png", "stale_from_before.png"):
        (tmp_path / "work" / "charts" / name).write_bytes(name.encode())
    dest = tmp_path / "repo" / "benchmarks" / "charts" / "cpu"
    dest.mkdir(parents=True)
    (dest / "robust_accuracy_vs_eps.png").write_bytes(b"old")  # a bench chart this report no longer draws
    (dest / "logo.png").write_bytes(b"someone else's image: left alone")
    drawn = ["charts/accuracy_vs_macs.png", "charts/training_curves.png"]
    paths = publish_charts(tmp_path / "work", drawn, dest, relative_to=tmp_path / "repo")
    assert paths == ["benchmarks/charts/cpu/accuracy_vs_macs.png", "benchmarks/charts/cpu/training_curves.png"]
    assert sorted(p.name for p in dest.iterdir()) == ["accuracy_vs_macs.png", "logo.png", "training_curves.png"]
    assert (dest / "training_curves.png").read_bytes() == b"training_curves.png"


def test_heads_at_chance_are_named_next_to_the_robustness_tables():
    """A head that answers one class keeps its 'robust accuracy' (the class share) under any attack; the report must
    say so instead of letting it read as robustness. Chance is 1 / classes, per head."""
    from types import SimpleNamespace

    from mailnet.bench.report import near_constant_line

    def job(key, model):
        return SimpleNamespace(key=key, composition=SimpleNamespace(name="pbr"), model=SimpleNamespace(label=model))

    def rec(bal):  # heads pneumonia (2 classes), retina (5 classes)
        return {"model_spec": {"kwargs": {"num_classes": [2, 5]}},
                "test": {"tasks": {"pneumonia": {"bal_acc": bal[0]}, "retina": {"bal_acc": bal[1]}}}}

    outcome = SimpleNamespace(jobs=[job("a", "good"), job("b", "flat"), job("c", "flat")],
                              records={"a": rec((0.80, 0.24)), "b": rec((0.50, 0.21)), "c": rec((0.56, 0.35))})
    line = near_constant_line(outcome)
    # good/retina: 0.24 <= 0.2 + 0.05; flat/pneumonia: mean 0.53 <= 0.55; flat/retina: mean 0.28 > 0.25
    assert "good on pbr / retina (balanced accuracy 0.240, chance 0.200)" in line
    assert "flat on pbr / pneumonia (balanced accuracy 0.530 ± 0.030, chance 0.500)" in line
    assert "good on pbr / pneumonia" not in line and "flat on pbr / retina" not in line
    assert near_constant_line(SimpleNamespace(jobs=[job("a", "good")], records={"a": rec((0.8, 0.4))})) == ""


def test_a_stale_output_copy_does_not_hide_the_further_committed_record(tmp_path):
    """Another sitting attacked the run and committed the record; this machine's output folder still holds the copy
    from before. The further record of the same weights wins; a record of other weights (trained again) does not."""
    from mailnet.bench.store import RECORD_SCHEMA, Store

    store = Store(tmp_path / "out", tmp_path / "results", save_results=False)
    (tmp_path / "out" / "records").mkdir(parents=True)
    (tmp_path / "results").mkdir()
    base = {"key": "k", "schema": RECORD_SCHEMA, "weights_sha256": "w1"}

    def put(where: str, rec: dict) -> None:
        path = tmp_path / where / "k.json" if where == "results" else tmp_path / "out" / "records" / "k.json"
        path.write_text(json.dumps(rec))

    put("out", {**base, "attacks": {}, "attacks_partial": {"a": {"records": [{"unit": 1}]}}})
    put("results", {**base, "attacks": {"a": {"rows": []}}})
    rec, where = store.find_record("k")
    assert where == tmp_path / "results" / "k.json" and "a" in rec["attacks"]
    put("results", {**base, "weights_sha256": "w0", "attacks": {"a": {"rows": []}}})  # other weights: not taken
    rec, where = store.find_record("k")
    assert where == tmp_path / "out" / "records" / "k.json" and rec["attacks"] == {}
    put("results", {**base, "attacks": {}})  # same weights, less far: the output folder's stays
    assert store.find_record("k")[1] == tmp_path / "out" / "records" / "k.json"


def test_suite_config_data_is_refused_not_silently_dropped(tmp_path):
    suite = write_suite(tmp_path, suite_dict(config={"data": {"subset": {"train": 8}}}))
    with pytest.raises(ConfigError, match="config.data: the data of every job comes from its composition"):
        load_suite(suite)


def test_a_suite_refuses_init_from(tmp_path):
    suite = write_suite(tmp_path, suite_dict(config={"model": {"init_from": "runs/x"}}))
    with pytest.raises(ConfigError, match="model.init_from: a suite compares models trained from scratch"):
        load_suite(suite).jobs()


def test_cost_section_names_the_machine_that_measured_the_timings():
    from types import SimpleNamespace

    from mailnet.bench.report import cost_section

    machine = {"cpu": "AMD EPYC", "gpu": None, "device": "cpu", "load_average": [2.5, 2, 2]}
    cost = {"params": 1e6, "macs": 2e9, "latency_ms": 10.0, "forward_samples_per_s": 100.0,
            "train_samples_per_s": 50.0, "tool": "mailnet.profiling.compare"}
    outcome = SimpleNamespace(costs=[SimpleNamespace(composition="pb", model="mail", size=None, key="c",
                                                     record={"cost": cost, "machine": machine})],
                              jobs=[], records={}, suite=SimpleNamespace(cost={"threads": 2, "batch": 64}))
    text = cost_section(outcome)
    assert "Timings measured on: AMD EPYC / GPU none / device cpu (1 cost record, 1-minute load average when " \
           "stored 2.50)" in text


def test_the_attack_line_names_autoattacks_own_steps_and_version(tmp_path):
    from mailnet.bench.report import header_section
    from mailnet.bench.runner import BenchOutcome
    from mailnet.environment import machine_info

    attacks = {"names": ["pgd", "autoattack"], "eps": ["4/255"], "steps": 3, "restarts": 1, "eot": 1, "subset": 8,
               "options": {"aa_steps": 7}}
    suite = load_suite(write_suite(tmp_path, suite_dict(attacks=attacks, cost=None)))
    text = header_section(BenchOutcome(suite, suite.jobs(), {}, []), machine_info("cpu"), "mailnet bench x")
    (line,) = [ln for ln in text.splitlines() if ln.startswith("- **Attacks**")]
    assert "steps 3" in line and "aa_steps 7" in line and "aa_version rand" in line  # the default, now visible


def test_list_says_when_a_composition_would_read_upsampled_files_and_gives_the_suites_estimate(tmp_path, data_root,
                                                                                               capsys):
    """Only 28 px files here: a 64 px suite would train on upsampled images, which --list says before anything
    runs (the paper's 128 px protocol from 28 px files would otherwise look like the real thing)."""
    big = {**DATA, "size": 64}
    suite = write_suite(tmp_path, suite_dict(compositions=[{"name": "pb64", "data": big}],
                                             expected_wall_time="about a week (a guess)"))
    assert main(["bench", str(suite), "--list", "--data-root", str(data_root), "--out", str(tmp_path / "out"),
                 "--results-dir", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    assert "note: pb64: modality 'pneumonia': no pneumoniamnist file of 64 px or more" in out
    assert "its images would be upsampled from 28 px" in out and "note: pb64: modality 'breast'" in out
    assert "the suite's own estimate for all of it: about a week (a guess)" in out
    suite28 = write_suite(tmp_path, suite_dict(), name="s28.yaml")
    assert main(["bench", str(suite28), "--list", "--data-root", str(data_root), "--out", str(tmp_path / "o2"),
                 "--results-dir", str(tmp_path / "r")]) == 0
    assert "note:" not in capsys.readouterr().out
