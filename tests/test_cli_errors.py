"""Bad command-line options fail at once, in one line that names the option, before any data or model is loaded
(so also without a run directory, a checkpoint or the datasets)."""
from __future__ import annotations

from pathlib import Path

import pytest

from mailnet.cli import main

CONFIG = str(Path(__file__).resolve().parents[1] / "configs" / "pneumonia_breast.yaml")


@pytest.mark.parametrize("argv, needle", [
    (["train", "--resume", "R", "train.epochs=20"], "--resume continues a run with the config saved in it; "
                                                    "drop KEY=VALUE overrides"),
    (["train", "--resume", "R", "--config", CONFIG, "--seeds", "1"], "drop --config, --seeds"),
    (["train", "--config", CONFIG, "--seeds", "a,b"], "--seeds: expected comma-separated integers"),
    (["train", "--config", CONFIG, "--seeds", "1,1"], "--seeds: expected distinct non-negative integers"),
    (["train", "--config", CONFIG, "--adv-train", "pgd", "--adv-eps", "abc"], "train.adv.eps: cannot read 'abc'"),
    (["train", "--config", CONFIG, "--adv-train", "pgd", "--adv-steps", "0"], "train.adv.steps"),  # not ignored
    (["train", "--config", CONFIG, "--adv-eps", "8/255"], "add --adv-train pgd|fgsm-rs"),
    (["predict", "R", "--draws", "0"], "--draws must be >= 1, got 0"),
    (["predict", "R", "--partners", "-5"], "--partners must be >= 1, got -5"),
    (["evaluate", "R", "--mc-samples", "0"], "--mc-samples must be >= 1, got 0"),
    (["evaluate", "R", "--batch-size", "0"], "--batch-size must be >= 1, got 0"),
    (["attack", "R", "--alpha-ratio", "-3"], "--alpha-ratio must be > 0, got -3"),
    (["attack", "R", "--eps", "4", "--eps-ratio", "1,-1"], "--eps-ratio: multipliers must lie in [0, 63.75]"),
    (["attack", "R", "--eot", "0"], "--eot must be >= 1, got 0"),
    (["attack", "R", "--square-queries", "0"], "--square-queries must be >= 1, got 0"),
    (["attack", "R", "--eps-ratio", "0,0"], "--eps-ratio: every multiplier is 0 in '0,0'"),
    (["attack", "R", "--eps-ratio", "1,0", "--threat", "each"], "with --threat each attacks that modality with no"),
    (["attack", "R", "--eps", "2,2"], "--eps: budget 2/255 is given more than once"),
    (["attack", "R", "--eps", "4,4/255"], "--eps: budget 4/255 is given more than once"),
    (["attack", "R", "--resume", "--overwrite"], "--resume and --overwrite exclude each other"),
    (["attack", "R", "--transfer-surrogate", "expectation"], "add 'transfer' to --attack"),
    (["attack", "R", "--attack", "transfer", "--transfer-surrogate", "expectation", "--transfer-from", "S"],
     "--transfer-surrogate chooses the 'transfer' attack's source when --transfer-from is not given: drop one"),
    (["profile", "--model", "mail", "--onnx", "R"], "no such file"),
    (["profile", "--model", "mail", "--iters", "0"], "--iters must be >= 1, got 0"),
    (["profile", "--model", "mail", "--num-classes", "1"], "--num-classes must be >= 2, got 1"),
    (["data", "describe", "--config", CONFIG, "data.channels=keep"], "--config describes the config's own data; "
                                                                      "drop FLAG arguments (data.channels=keep)"),
    (["data", "describe", "--config", CONFIG, "--size", "64"], "drop --size (64)"),
])
def test_bad_options_fail_in_one_line_naming_the_option(tmp_path, capsys, argv, needle):
    argv = [str(tmp_path / "missing") if a == "R" else a for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mailnet: error:") and len(err.splitlines()) == 1, err
    assert needle in err, err
    assert not (tmp_path / "missing").exists()  # nothing was created on the way to the error


def test_overrides_may_follow_options_and_unknown_options_still_fail(capsys):
    from mailnet.cli import build_parser

    args, extra = build_parser().parse_known_args(["train", "--config", CONFIG, "train.epochs=1", "--quiet",
                                                   "train.lr=0.1"])
    assert args.overrides == ["train.epochs=1"] and extra == ["train.lr=0.1"]  # what main() now folds back in
    with pytest.raises(SystemExit):
        main(["train", "--config", CONFIG, "--epochs", "3"])
    assert "unrecognized arguments: --epochs" in capsys.readouterr().err
    # folded in: the bad value of the late override is what the error names, not argparse
    assert main(["train", "--config", CONFIG, "train.epochs=1", "--quiet", "train.lr=-1"]) == 2
    assert "train.lr: must be a number > 0, got -1" in capsys.readouterr().err


def test_version_names_the_installed_package(capsys):
    import mailnet
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"mailnet {mailnet.__version__}"


def test_help_texts_show_no_sphinx_markup(capsys):
    """Descriptions come from docstrings written for Sphinx; the terminal help must not show their ``double
    backticks`` (every command, and the nested 'data' sub-commands)."""
    from mailnet.commands import COMMANDS
    for argv in [[c, "--help"] for c in COMMANDS] + [["data", "describe", "--help"], ["--help"]]:
        with pytest.raises(SystemExit):
            main(argv)
        out = capsys.readouterr().out
        assert "usage: mailnet" in out and "``" not in out, argv


def test_own_warnings_print_as_one_line_and_others_keep_their_form():
    from mailnet.cli import _format_warning
    from mailnet.errors import MailnetWarning
    assert _format_warning("images upsampled", MailnetWarning, "x.py", 3) == "mailnet: warning: images upsampled\n"
    other = _format_warning("deprecated", DeprecationWarning, "x.py", 3, line="")
    assert "DeprecationWarning: deprecated" in other and "x.py:3" in other


def test_config_mistakes_name_their_place_in_one_line_and_leave_no_run_behind(tmp_path, capsys):
    """A YAML syntax error names its line and column; an unknown model argument names ``model.kwargs`` and what
    the model accepts. Both fail before a run directory is made."""
    import numpy as np
    from PIL import Image

    for c in ("a", "b"):
        (tmp_path / "imgs" / c).mkdir(parents=True)
        for i in range(5):
            Image.fromarray(np.full((8, 8), 40 * i, np.uint8)).save(tmp_path / "imgs" / c / f"{i}.png")
    good = ("model: {name: mail, kwargs: {widths: [4, 4, 8, 8]}}\n"
            f"data:\n  size: 8\n  modalities:\n    - {{name: f, source: folder, root: {tmp_path / 'imgs'}}}\n"
            "  split_fractions: {val: 0.2, test: 0.2}\n")
    (tmp_path / "bad.yaml").write_text(good.replace("8]}}", "8}}"))  # the list is never closed
    (tmp_path / "ok.yaml").write_text(good)
    run = tmp_path / "run"
    for argv, needle in (
        (["--config", str(tmp_path / "bad.yaml")], f"{tmp_path / 'bad.yaml'}: line 1, column 49: not valid YAML (expected ',' or ']', but got '}}'"),
        (["--config", str(tmp_path / "ok.yaml"), "model.kwargs.width=3"],
         "model.kwargs: mail: unknown argument(s) width (allowed: attention_noise, drop_rate, fast, groups"),
    ):
        assert main(["train", *argv, "--run-dir", str(run), "--device", "cpu", "--quiet"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("mailnet: error:") and len(err.splitlines()) == 1, err
        assert needle in err, err
        assert not run.exists()


def test_describe_says_which_files_there_are_when_none_matches(data_root, capsys):
    """It said 'no MedMNIST .npz files found' while the folder held 28 px files, just not 64 px ones."""
    assert main(["data", "describe", "--data-root", str(data_root), "--size", "64"]) == 2
    err = capsys.readouterr().err
    assert f"no MedMNIST file under {data_root} matches --size 64; found: " in err and "pneumoniamnist (28 px)" in err
