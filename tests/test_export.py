"""`mailnet export`: ONNX graphs that onnxruntime runs to within 1e-4 of PyTorch on real images; random models
refused with the reason, or exported as one labelled fixed draw."""
import contextlib
import hashlib
import io
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from mailnet.cli import main as cli
from mailnet.data.images import to_nchw
from mailnet.engine.checkpoint import save_checkpoint
from mailnet.errors import MailnetError
from mailnet.engine.runs import load_model
from mailnet.export import check_onnx, export_checkpoint, onnx_session, run_onnx, time_onnx
from mailnet.models import create_model

TINY = [16, 16, 32, 32]


def _checkpoint(path, name, **kw):
    kwargs = dict(in_chans=[1, 3], num_classes=[2, 5], img_size=28, **kw)
    torch.manual_seed(0)
    model = create_model(name, **kwargs)
    model.train()
    with torch.no_grad():  # non-trivial BN statistics, as after training
        model([torch.rand(8, 1, 28, 28), torch.rand(8, 3, 28, 28)])
    meta = {"model": {"name": name, "kwargs": kwargs},
            "modalities": [{"name": "pneumonia", "in_chans": 1, "img_size": 28},
                           {"name": "retina", "in_chans": 3, "img_size": 28}],
            "tasks": [{"name": "pneumonia", "task_type": "binary", "num_classes": 2, "class_names": [], "modality": 0},
                      {"name": "retina", "task_type": "ordinal", "num_classes": 5, "class_names": [], "modality": 1}],
            "paired": False, "config": {}}
    save_checkpoint(path, {"model." + k: v for k, v in model.state_dict().items()}, meta)
    return path


@pytest.fixture(scope="module")
def real_images(data_root):
    pn = to_nchw(np.load(data_root / "pneumoniamnist" / "pneumoniamnist.npz")["test_images"][:5])
    rt = to_nchw(np.load(data_root / "retinamnist" / "retinamnist.npz")["test_images"][:5])
    return [pn, rt]


@pytest.fixture(scope="module")
def mail_checkpoint(tmp_path_factory):
    return _checkpoint(tmp_path_factory.mktemp("ck") / "mail.safetensors", "mail", widths=TINY)


@pytest.fixture(scope="module")
def mail_export(mail_checkpoint, tmp_path_factory) -> Path:
    """The tiny MAIL checkpoint exported once (an export traces the model: ~7 s on a CPU); tests that need an
    earlier export on disk copy it (graph and card) with :func:`_place_export` instead of exporting again."""
    out = tmp_path_factory.mktemp("exported") / "mail.onnx"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert cli(["export", str(mail_checkpoint), "--onnx", str(out)]) == 0
    (out.parent / "printed.txt").write_text(printed.getvalue())  # what the command told its user
    return out


def _place_export(src: Path, dst: Path) -> Path:
    """Copy an export's graph and model card to ``dst`` (the card records no file name, so a copy is what the
    CLI would have written there)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(src.read_bytes())
    Path(str(dst) + ".json").write_bytes(Path(str(src) + ".json").read_bytes())
    return dst


def test_mail_exports_and_matches_onnxruntime_on_real_images(tmp_path, mail_checkpoint, real_images, capsys):
    out = tmp_path / "mail.onnx"
    assert cli(["export", str(mail_checkpoint), "--onnx", str(out), "--benchmark", "--batch", "2",
                "--threads", "1"]) == 0
    text = capsys.readouterr().out
    assert "max |ONNX - PyTorch|" in text and "samples/s" in text
    model, _, _ = load_model(mail_checkpoint)
    assert check_onnx(out, model, real_images, atol=1e-4) <= 1e-4
    sess = onnx_session(out)
    assert [i.name for i in sess.get_inputs()] == ["pneumonia", "retina"]
    assert [o.name for o in sess.get_outputs()] == ["pneumonia_logits", "retina_logits"]
    # dynamic batch, and the outputs really depend on the images
    one = run_onnx(sess, [x[:1] for x in real_images])
    five = run_onnx(sess, real_images)
    assert one[1].shape == (1, 5) and five[1].shape == (5, 5)
    assert np.allclose(one[0], five[0][:1], atol=1e-5) and not np.allclose(five[1][0], five[1][1])
    props = {p.key: p.value for p in onnx.load(out).metadata_props}
    assert props["mailnet.model"] == "mail" and "mailnet.fixed_draw_seed" not in props
    t = time_onnx(out, batch=4, threads=1, iters=2, batch_iters=1, warmup=1)
    assert t["latency_ms"] > 0 and t["batch"] == 4 and t["samples_per_s"] > 0
    with pytest.raises(MailnetError, match="only for random models"):
        export_checkpoint(mail_checkpoint, tmp_path / "m.onnx", fixed_draw=1)


def test_an_existing_export_is_not_replaced_without_overwrite(tmp_path, mail_checkpoint, mail_export, capsys):
    """A second export to the same path (graph, card or partner bank) is refused before any work, and leaves the
    first one byte for byte; ``--overwrite`` replaces it."""
    out, bank = _place_export(mail_export, tmp_path / "mail.onnx"), tmp_path / "bank.npz"
    first = out.read_bytes(), Path(str(out) + ".json").read_bytes()
    capsys.readouterr()
    assert cli(["export", str(mail_checkpoint), "--onnx", str(out), "--partner-bank", str(bank)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "mail.onnx" in err and "--overwrite" in err
    assert (out.read_bytes(), Path(str(out) + ".json").read_bytes()) == first and not bank.exists()
    Path(str(out) + ".json").unlink()  # the card alone left over from an earlier export is protected too
    out.unlink()
    Path(str(out) + ".json").write_text("{}")
    assert cli(["export", str(mail_checkpoint), "--onnx", str(out)]) == 2
    assert "mail.onnx.json" in capsys.readouterr().err and not out.exists()
    assert cli(["export", str(mail_checkpoint), "--onnx", str(out), "--overwrite"]) == 0
    assert out.exists() and json.loads(Path(str(out) + ".json").read_text())["model"] == "mail"


def test_profile_times_the_trained_model_and_refuses_an_onnx_graph_of_another(tmp_path, mail_checkpoint, mail_export,
                                                                               capsys):
    """`mailnet profile --run` profiles the architecture the checkpoint holds (its widths, its per-modality channels,
    its head sizes), not the registry's default; an ONNX graph with other inputs is refused, not timed beside it."""
    out = mail_export
    js = tmp_path / "p.json"
    common = ["--quick", "--threads", "1", "--iters", "1", "--batch-iters", "1", "--warmup", "0"]
    assert cli(["profile", "--run", str(mail_checkpoint), "--onnx", str(out), "--json", str(js), *common]) == 0
    import json

    (row,) = json.loads(js.read_text())["results"]
    model, _, _ = load_model(mail_checkpoint)
    assert row["params"] == sum(p.numel() for p in model.parameters())
    capsys.readouterr()
    assert cli(["profile", "--model", "mail", "--size", "32", "--onnx", str(out), *common]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "its inputs (C, H, W) are [(1, 28, 28), (3, 28, 28)]" in err
    assert cli(["profile", "--run", str(mail_checkpoint), "--model", "mail"]) == 2


def test_random_model_is_refused_with_the_reason_or_exported_as_one_labelled_draw(tmp_path, real_images, capsys):
    ck = _checkpoint(tmp_path / "robust.safetensors", "robust_mail", widths=TINY)
    out = tmp_path / "robust.onnx"
    with pytest.raises(MailnetError, match="random at inference.*no single deterministic graph.*--fixed-draw"):
        export_checkpoint(ck, out)
    assert not out.exists()
    assert cli(["export", str(ck), "--onnx", str(out)]) == 2
    assert "random at inference" in capsys.readouterr().err
    info = export_checkpoint(ck, out, fixed_draw=3, check_inputs=real_images, fixed_batch=2)
    assert info["fixed_draw"] == 3 and info["max_abs_diff"] <= 1e-4
    props = {p.key: p.value for p in onnx.load(out).metadata_props}
    assert props["mailnet.fixed_draw_seed"] == "3" and "ONE FIXED RANDOM DRAW" in props["mailnet.warning"]
    sess = onnx_session(out)
    xs = [x[:2] for x in real_images]
    a, b = run_onnx(sess, xs), run_onnx(sess, xs)
    assert all(np.array_equal(p, q) for p, q in zip(a, b))  # a fixed draw: deterministic graph


def test_bad_checkpoint_is_a_one_line_error(tmp_path, capsys):
    bad = tmp_path / "nope.safetensors"
    bad.write_bytes(b"not a checkpoint")
    assert cli(["export", str(bad), "--onnx", str(tmp_path / "x.onnx")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mailnet: error:") and "nope.safetensors" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "x.onnx").exists()


def test_an_export_that_fails_its_check_leaves_no_file(tmp_path, mail_checkpoint, real_images):
    """A graph whose outputs differ from PyTorch beyond the tolerance is not a result: nothing stays on disk."""
    out = tmp_path / "m.onnx"
    with pytest.raises(MailnetError, match=r"onnxruntime outputs differ from PyTorch by .* \(> 0\)"):
        export_checkpoint(mail_checkpoint, out, check_inputs=real_images, atol=0.0)
    assert not out.exists() and not Path(str(out) + ".json").exists()
    with pytest.raises(MailnetError, match="--atol must be a number >= 0, got nan"):
        export_checkpoint(mail_checkpoint, out, atol=float("nan"))


def test_the_export_says_how_to_feed_the_graph_and_read_it_without_mailnet(mail_checkpoint, mail_export):
    """A deployer with only the .onnx file (and its card beside it) learns the pixel range, the preprocessing, the
    task types, class names and decision rules, and which checkpoint the graph came from."""
    out = mail_export
    assert f"model card (inputs: pixels in [0, 1]" in (out.parent / "printed.txt").read_text()
    card = json.loads(Path(str(out) + ".json").read_text())
    props = {p.key: p.value for p in onnx.load(out).metadata_props}
    assert json.loads(props["mailnet.card"]) == card and props["mailnet.input_range"] == "0,1"
    assert card["checkpoint_sha256"] == hashlib.sha256(mail_checkpoint.read_bytes()).hexdigest()
    assert [i["name"] for i in card["inputs"]] == ["pneumonia", "retina"] and card["batch"] == "dynamic"
    assert card["inputs"][1]["shape"] == ["batch", 3, 28, 28] and card["inputs"][1]["range"] == [0.0, 1.0]
    assert "mailnet.load_image(path, channels=3, size=28)" in card["inputs"][1]["preprocessing"]
    binary, ordinal = card["outputs"]
    assert binary["task_type"] == "binary" and "last class's probability > 0.5" in binary["decision"]
    assert ordinal["name"] == "retina_logits" and "argmax" in ordinal["decision"]
    assert "partner-bank" in card["missing_modality"]  # an unpaired model: what stands in for a missing input
    assert "0.5" in props["mailnet.outputs"]


def test_the_partner_bank_is_written_on_request_for_a_deployer(tmp_path, mail_checkpoint, banked_checkpoint,
                                                               banked_export, capsys):
    from mailnet.engine.checkpoint import load_checkpoint

    bank, _ = load_checkpoint(banked_checkpoint)
    npz = banked_export.with_suffix(".npz")  # written by `export --partner-bank` (the fixture)
    saved = np.load(npz)
    assert sorted(saved.files) == ["pneumonia", "retina"]
    assert np.array_equal(saved["retina"], bank["partner_bank.1"].numpy()) and saved["retina"].dtype == np.uint8
    capsys.readouterr()
    assert cli(["export", str(mail_checkpoint), "--onnx", str(tmp_path / "n.onnx"), "--partner-bank",
                str(tmp_path / "none.npz")]) == 2
    assert "no partner bank in this checkpoint" in capsys.readouterr().err


def test_profile_refuses_an_onnx_graph_of_another_model_or_checkpoint(tmp_path, mail_checkpoint, mail_export, capsys):
    common = ["--quick", "--threads", "1", "--iters", "1", "--batch-iters", "1", "--warmup", "0"]
    out = mail_export
    other = _checkpoint(tmp_path / "other.safetensors", "mail", widths=[8, 8, 16, 16])  # same inputs, other weights
    capsys.readouterr()
    assert cli(["profile", "--run", str(other), "--onnx", str(out), *common]) == 2
    assert "exported from another checkpoint" in capsys.readouterr().err
    late = _checkpoint(tmp_path / "late.safetensors", "resnet18_late_fusion")
    late_onnx = tmp_path / "late.onnx"
    assert cli(["export", str(late), "--onnx", str(late_onnx)]) == 0
    capsys.readouterr()
    assert cli(["profile", "--run", str(mail_checkpoint), "--onnx", str(late_onnx), *common]) == 2
    assert "exported from a 'resnet18_late_fusion' model, the profiled one is 'mail'" in capsys.readouterr().err
    js = tmp_path / "p.json"
    assert cli(["profile", "--run", str(mail_checkpoint), "--onnx", str(out), "--json", str(js), *common]) == 0
    printed = capsys.readouterr().out
    assert "measured with 1 CPU thread(s), batch 8" in printed
    saved = json.loads(js.read_text())
    assert saved["settings"]["size"] == 28 and saved["settings"]["batch"] == 8 and saved["machine"]["cpu"]


@pytest.fixture(scope="module")
def banked_checkpoint(mail_checkpoint, tmp_path_factory):
    """The tiny MAIL checkpoint with a partner bank, so that ``--partner-bank`` has something to write."""
    from mailnet.engine.checkpoint import load_checkpoint

    tensors, meta = load_checkpoint(mail_checkpoint)
    gen = torch.Generator().manual_seed(0)
    bank = {"partner_bank.0": torch.randint(0, 256, (3, 1, 28, 28), dtype=torch.uint8, generator=gen),
            "partner_bank.1": torch.randint(0, 256, (3, 3, 28, 28), dtype=torch.uint8, generator=gen)}
    path = tmp_path_factory.mktemp("banked") / "banked.safetensors"
    save_checkpoint(path, {**tensors, **bank}, meta)
    return path


@pytest.fixture(scope="module")
def banked_export(banked_checkpoint, tmp_path_factory) -> Path:
    """The banked checkpoint exported once with its partner bank (``q.onnx``, its card, ``q.npz``)."""
    out = tmp_path_factory.mktemp("banked_export") / "q.onnx"
    bank = out.with_suffix(".npz")
    assert cli(["export", str(banked_checkpoint), "--onnx", str(out), "--partner-bank", str(bank)]) == 0
    return out


def _files(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (hidden temporaries included) with its bytes: what a command left behind."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("mailnet: error:") and len(err.splitlines()) == 1, err
    return err


@pytest.mark.parametrize("bank", ["m.onnx", "m.onnx.json", "sub/../m.onnx"])
def test_a_partner_bank_on_the_graph_or_its_card_is_refused_before_any_work(tmp_path, banked_checkpoint, bank,
                                                                            banked_export, capsys, monkeypatch):
    """`--partner-bank` naming the graph or its model card would overwrite it with an npz: refused, naming both
    paths, before the checkpoint is even read, with or without --overwrite, and an earlier export stays as it was."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    assert cli(["export", str(banked_checkpoint), "--onnx", "m.onnx", "--partner-bank", bank]) == 2
    err = _one_line_error(capsys)
    clash = "m.onnx.json" if bank.endswith(".json") else "m.onnx"
    assert f"--partner-bank {bank} and " in err and f" {clash} are the same file" in err
    assert _files(tmp_path) == {}
    _place_export(banked_export, tmp_path / "m.onnx")  # an earlier export of this checkpoint
    before = _files(tmp_path)
    assert cli(["export", str(banked_checkpoint), "--onnx", "m.onnx", "--partner-bank", bank, "--overwrite"]) == 2
    assert "are the same file" in _one_line_error(capsys) and _files(tmp_path) == before


def test_an_unwritable_or_folder_output_path_fails_before_anything_is_written(tmp_path, banked_checkpoint, capsys):
    """Every output path is checked up front: a partner bank that cannot be written, or is a folder, fails the export
    with a line naming it, and neither the graph nor its card is left on disk."""
    onnx_path = tmp_path / "n.onnx"
    assert cli(["export", str(banked_checkpoint), "--onnx", str(onnx_path), "--partner-bank",
                "/proc/nope/x.npz"]) == 2
    assert "/proc/nope/x.npz: cannot write here" in _one_line_error(capsys)
    assert _files(tmp_path) == {}
    folder = tmp_path / "bankdir"
    folder.mkdir()
    assert cli(["export", str(banked_checkpoint), "--onnx", str(onnx_path), "--partner-bank", str(folder),
                "--overwrite"]) == 2
    assert f"--partner-bank {folder} is a folder" in _one_line_error(capsys)
    assert _files(tmp_path) == {} and sorted(p.name for p in tmp_path.iterdir()) == ["bankdir"]
    Path(str(onnx_path) + ".json").mkdir()  # the model card's path is checked too
    assert cli(["export", str(banked_checkpoint), "--onnx", str(onnx_path), "--overwrite"]) == 2
    assert "n.onnx.json is a folder" in _one_line_error(capsys) and _files(tmp_path) == {}


def test_a_failure_after_writing_started_removes_every_file_and_folder_it_wrote(tmp_path, banked_checkpoint, capsys,
                                                                              monkeypatch):
    """The graph, card and bank are written and checked, then the benchmark fails: nothing of the export stays, not
    even the folders it created for its outputs."""
    import mailnet.export

    def broken(*args, **kwargs):
        raise MailnetError("onnxruntime ran out of memory")

    monkeypatch.setattr(mailnet.export, "time_onnx", broken)
    out = tmp_path / "new" / "deep" / "m.onnx"
    assert cli(["export", str(banked_checkpoint), "--onnx", str(out), "--partner-bank", str(tmp_path / "b.npz"),
                "--benchmark", "--threads", "1"]) == 2
    assert "ran out of memory" in _one_line_error(capsys)
    assert list(tmp_path.iterdir()) == []


def test_a_failed_overwrite_leaves_the_earlier_export_exactly_as_it_was(tmp_path, tmp_path_factory, banked_export,
                                                                        capsys):
    """`--overwrite` replaces the earlier graph, card and bank only with an export that passed its check: one that
    fails it (another checkpoint, --atol 0) leaves all three byte for byte, and no temporary file beside them."""
    out = _place_export(banked_export, tmp_path / "q.onnx")  # the earlier export: graph, card and bank
    (tmp_path / "q.npz").write_bytes(banked_export.with_suffix(".npz").read_bytes())
    before = _files(tmp_path)
    assert sorted(before) == ["q.npz", "q.onnx", "q.onnx.json"]
    other = _checkpoint(tmp_path_factory.mktemp("other") / "other.safetensors", "mail", widths=[8, 8, 16, 16])
    capsys.readouterr()
    assert cli(["export", str(other), "--onnx", str(out), "--overwrite", "--atol", "0"]) == 2
    assert f"{out}: onnxruntime outputs differ from PyTorch" in _one_line_error(capsys)
    assert _files(tmp_path) == before
    assert cli(["export", str(other), "--onnx", str(out), "--overwrite"]) == 0  # a passing one does replace them
    after = _files(tmp_path)
    assert after["q.onnx"] != before["q.onnx"] and after["q.npz"] == before["q.npz"]
    assert json.loads(after["q.onnx.json"])["checkpoint_sha256"] == hashlib.sha256(other.read_bytes()).hexdigest()


def test_staged_outputs_put_back_the_earlier_files_when_a_move_into_place_fails(tmp_path, monkeypatch):
    """Should the second of two moves fail, the first target gets its earlier bytes back, a new one disappears, and
    no temporary or backup stays: the outputs are never half new, half old."""
    import os

    from mailnet.export import StagedOutputs

    old, new = tmp_path / "old.onnx", tmp_path / "new.onnx.json"
    old.write_bytes(b"earlier graph")
    real_replace = os.replace

    def failing(src, dst):
        if Path(dst) == new:
            raise PermissionError(13, "Permission denied")
        real_replace(src, dst)

    with pytest.raises(MailnetError, match=r"new\.onnx\.json: cannot write here \(Permission denied\)"):
        with StagedOutputs([old, new]) as staged:
            staged[old].write_bytes(b"new graph")
            staged[new].write_text("{}")
            monkeypatch.setattr(os, "replace", failing)
            staged.commit()
    monkeypatch.undo()
    assert _files(tmp_path) == {"old.onnx": b"earlier graph"}
    with StagedOutputs([old, new]) as staged:  # and when every move works, both are replaced together
        staged[old].write_bytes(b"new graph")
        staged[new].write_text("{}")
        staged.commit()
    assert _files(tmp_path) == {"new.onnx.json": b"{}", "old.onnx": b"new graph"}
