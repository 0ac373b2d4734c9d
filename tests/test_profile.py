"""The cost profiler: exact counts on hand-checkable nets, sane timings on a tiny setting, and the CLI."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn as nn

from mailnet.cli import main
from mailnet.errors import ConfigError
from mailnet.models import create_model
from mailnet.layers.noise import Dropout
from mailnet.engine.randomness import is_stochastic
from mailnet.profiling import compare, count_macs, count_parameters, format_table

TINY = dict(modalities=1, size=8, in_chans=1, batch=2, threads=1, latency_iters=2, batch_iters=1, warmup=0)


class TinyNet(nn.Module):
    """conv3x3 (2 -> 4, pad 1, no bias) on 5x5, an element-wise scale, then Linear(100 -> 3)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, padding=1, bias=False)
        self.fc = nn.Linear(4 * 5 * 5, 3)

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        h = self.conv(xs[0]) * 2.0
        return [self.fc(h.flatten(1))]


class NoisyNet(TinyNet):
    """TinyNet with Monte-Carlo dropout on its logits: random in eval mode too."""

    def __init__(self):
        super().__init__()
        self.drop = Dropout(0.5, mc=True)

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        return [self.drop(o) for o in super().forward(xs)]


def test_macs_match_a_hand_count():
    net = TinyNet()
    counts = count_macs(net, [torch.rand(1, 2, 5, 5)])
    conv = 4 * 5 * 5 * (2 * 3 * 3)  # outputs x (inputs per output)
    linear = 100 * 3
    assert counts["macs"] == conv + linear
    assert counts["flops"] == 2 * (conv + linear)
    assert counts["macs_by_operator"] == {"conv": conv, "linear": linear}
    assert counts["uncounted_ops"] == {"aten::mul": 1}  # the element-wise scale is reported, not silently dropped
    assert "fvcore" in counts["counter"]


def test_macs_scale_with_batch_and_resolution():
    net = TinyNet()
    one = count_macs(net, [torch.rand(1, 2, 5, 5)])["macs"]
    assert count_macs(net, [torch.rand(3, 2, 5, 5)])["macs"] == 3 * one


def test_parameter_count_and_stochastic_detection():
    net = TinyNet()
    assert count_parameters(net) == 2 * 4 * 9 + 100 * 3 + 3
    x = [torch.rand(2, 2, 5, 5)]
    assert not is_stochastic(net, x)
    assert is_stochastic(NoisyNet(), x)


def test_compare_on_a_tiny_setting():
    before = torch.get_num_threads()
    rows = compare(["resnet18_late_fusion", "resnet18_single"], **TINY)
    assert torch.get_num_threads() == before  # the thread count is restored
    assert [r["model"] for r in rows] == ["resnet18_late_fusion", "resnet18_single"]
    built = create_model("resnet18_late_fusion", in_chans=[1], num_classes=[2], img_size=8)
    late, single = rows
    assert late["params"] == sum(p.numel() for p in built.parameters())
    # with one modality both are one ResNet-18 with a 512 -> 2 head: identical cost
    assert late["params"] == single["params"] and late["macs"] == single["macs"]
    assert late["ratios"]["params"] == 1.0 and single["ratios"]["macs"] == 1.0
    # ResNet-18's convs dominate: the conv count lies within the total and is most of it
    assert 0.9 * late["macs"] < late["macs_by_operator"]["conv"] < late["macs"]
    assert late["flops"] == 2 * late["macs"]
    for r in rows:
        assert len(r["timings_s"]["latency"]) == 2 and len(r["timings_s"]["train_step"]) == 1
        assert all(t > 0 for ts in r["timings_s"].values() for t in ts)
        assert r["train_samples_per_s"] == pytest.approx(2000.0 / r["train_step_ms"])
        assert not r["stochastic"]
        assert r["settings"]["threads_used"] == 1 and r["settings"]["stem_resolved"] == "cifar"
    table = format_table(rows)
    assert "resnet18_single" in table and "fvcore" in table


def test_two_modalities_cost_twice_one():
    one = compare(["resnet18_late_fusion"], **TINY)[0]
    two = compare(["resnet18_late_fusion"], **{**TINY, "modalities": 2})[0]
    head_one, head_two = 512 * 2, 1024 * 2 * 2  # Linear heads: 1 x (512 -> 2) vs 2 x (1024 -> 2)
    assert two["macs"] - head_two == 2 * (one["macs"] - head_one)


def test_bad_settings_are_config_errors():
    with pytest.raises(ConfigError, match="batch"):
        compare(["resnet18_single"], **{**TINY, "batch": 0})
    with pytest.raises(ConfigError, match="baseline"):
        compare(["resnet18_single"], baseline="mail", **TINY)
    with pytest.raises(ConfigError, match="unexpected keyword"):
        compare(["resnet18_single"], bogus=1, **TINY)
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA"):
            compare(["resnet18_single"], **{**TINY, "device": "cuda"})


def test_cli_smoke(tmp_path, capsys):
    out = tmp_path / "cost" / "profile.json"
    rc = main(["profile", "--model", "resnet18_late_fusion", "--compare", "resnet18_single", "--modalities", "1",
               "--size", "8", "--in-chans", "1", "--threads", "1", "--quick", "--batch", "2", "--iters", "1",
               "--json", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "params M" in printed and "resnet18_single" in printed
    saved = json.loads(out.read_text())
    assert [r["model"] for r in saved["results"]] == ["resnet18_late_fusion", "resnet18_single"]
    assert saved["results"][0]["settings"]["batch"] == 2
    assert not list(out.parent.glob(".*tmp"))  # atomic write left no temporary file


def test_cli_unknown_model_is_one_line_error(capsys):
    rc = main(["profile", "--compare", "resnet18_single,no_such_net", "--size", "8", "--quick"])
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mailnet: error:") and "no_such_net" in err and "\n" not in err
