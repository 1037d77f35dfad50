from __future__ import annotations

import json
import os
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

from automc.compress.analysis import analyze
from automc.errors import UserError
from automc.models import build_model
from automc.measure.profiles import PROFILES, Measurement, build_profile, structural_hash, time_call
from automc.registry import refresh
from automc.testing import check_device_profile
from automc.device_profiles.accelerator import AcceleratorProfile
from automc.device_profiles.lut import LookupTableProfile, build_lut, fidelity
from automc.search_spaces.channel_pruning import ChannelPruningSpace
from automc.search_spaces.mixed_precision import MixedPrecisionSpace
from automc.search_spaces.sparsity import SparsitySpace
from tests.conftest import assert_user_error, run_cli
from tests.user_models import concat_cnn

FAST_ORT = {"min_repeats": 20, "max_seconds": 0.5, "warmup": 5, "sessions": 1}


@pytest.fixture(scope="module")
def r20():
    torch.manual_seed(0)
    return build_model("resnet20").eval(), torch.zeros(1, 3, 32, 32)


def _lut_settings(model: nn.Module, x: torch.Tensor, tmp_path: Path) -> dict:
    sp = ChannelPruningSpace(model, x, round_to=16)
    table = build_lut(model, sp, build_profile("onnxruntime-cpu", FAST_ORT), x, step=16, n_fit=2)
    path = tmp_path / "lut.json"
    path.write_text(json.dumps(table))
    return {"table": str(path)}


# Settings a profile needs (a table) or that keep the suite fast; every registered profile is
# checked, with no settings unless it is listed here.
SETTINGS = {"onnxruntime-cpu": lambda model, x, tmp: FAST_ORT, "lut": _lut_settings}


@pytest.mark.parametrize("name", PROFILES.names())
def test_every_registered_profile_conforms(r20, name: str, tmp_path: Path) -> None:
    model, x = r20
    settings = SETTINGS[name](model, x, tmp_path) if name in SETTINGS else None
    check_device_profile(build_profile(name, settings), model, x)


def test_flops_profile_honours_bits_and_sparsity(r20) -> None:
    model, x = r20
    flops = build_profile("flops")
    dense = flops.measure(model, x).values
    sparse = flops.measure(SparsitySpace(model, x).apply(model, {k: 0.25 for k in SparsitySpace(model, x).dimensions}), x).values
    assert sparse["macs"] == dense["macs"] and sparse["effective_macs"] < 0.3 * dense["macs"]
    assert sparse["size_bytes"] < 0.5 * dense["size_bytes"]  # bitmask + non-zeros
    mp = MixedPrecisionSpace(model, x, calibration=[torch.randn(4, 3, 32, 32)])
    q4 = flops.measure(mp.apply(model, mp.uniform(4)), x).values
    assert q4["size_bytes"] < 0.2 * dense["size_bytes"]
    assert dense["peak_activation_bytes"] == 2 * 16 * 32 * 32 * 4  # largest in+out: 16x32x32 float maps


def test_onnxruntime_measures_and_the_run_cache_serves_equal_structures(r20, tmp_path: Path) -> None:
    from automc.measure.cache import CachedProfile

    model, x = r20
    cache = tmp_path / "measure_cache.jsonl"
    prof = build_profile("onnxruntime-cpu", FAST_ORT)
    assert prof.cacheable and not build_profile("flops").cacheable  # flops counts non-zero weights
    m1 = CachedProfile(prof, cache).measure(model, x)
    assert m1.values["latency_ms"] > 0 and m1.repeats >= 20 and m1.provenance["cached"] is False
    assert m1.provenance["threads"] == 1 and "onnxruntime" in m1.provenance
    # same architecture, different weights: served from the file by a new wrapper (a resumed run)
    other = build_model("resnet20").eval()
    again = CachedProfile(build_profile("onnxruntime-cpu", FAST_ORT), cache).measure(other, x)
    assert again.provenance["cached"] is True and again.values == m1.values
    # a line cut short by a kill is skipped, not fatal: the next measurement is simply redone
    with open(cache, "a") as f:
        f.write('{"key": "abc", "measu')
    assert CachedProfile(prof, cache).measure(other, x).provenance["cached"] is True
    # other settings are another key: measured afresh
    slow = CachedProfile(build_profile("onnxruntime-cpu", {**FAST_ORT, "sessions": 2}), cache).measure(model, x)
    assert slow.provenance["cached"] is False
    pruned = ChannelPruningSpace(model, x).apply(model, {"layer1.0.conv1:ratio": 0.5})
    assert structural_hash(pruned, x) != structural_hash(model, x)
    assert structural_hash(other, x) == structural_hash(model, x)


def test_timing_stops_when_the_median_is_stable() -> None:
    t = time_call(lambda: sum(range(2000)), warmup=2, min_repeats=40, max_seconds=2)
    assert t.repeats >= 40 and t.median_ms > 0 and t.iqr_ms >= 0


def test_accelerator_scales_with_bits_and_reads_yaml(r20, tmp_path: Path) -> None:
    model, x = r20
    acc = AcceleratorProfile()
    mp = MixedPrecisionSpace(model, x, calibration=[torch.randn(4, 3, 32, 32)], first_last="search")
    lat = {b: acc.measure(mp.apply(model, mp.uniform(b)), x).values for b in (8, 4, 2)}
    assert lat[8]["latency_ms"] > lat[4]["latency_ms"] > lat[2]["latency_ms"]
    assert lat[8]["energy_mj"] > lat[4]["energy_mj"] > lat[2]["energy_mj"]
    # a layer compute-bound at both widths does 4x the BitBrick work at 8x8 bits as at 4x4
    ov = acc.spec.per_layer_overhead_us * 1e-3
    l8 = {r["layer"]: r for r in acc.layers(mp.apply(model, mp.uniform(8)), x)}
    l4 = {r["layer"]: r for r in acc.layers(mp.apply(model, mp.uniform(4)), x)}
    both = [n for n in l8 if l8[n]["bound"] == l4[n]["bound"] == "compute"]
    assert both
    for n in both:
        assert (l8[n]["latency_ms"] - ov) / (l4[n]["latency_ms"] - ov) == pytest.approx(4.0, rel=1e-6)
    spec = (Path(__file__).parents[1] / "device_profiles" / "devices" / "bitfusion.yaml").read_text()
    faster = tmp_path / "fast.yaml"
    faster.write_text(spec.replace("bitbricks: 8192", "bitbricks: 16384").replace("dram_bandwidth_gbps: 25.6", "dram_bandwidth_gbps: 51.2"))
    assert AcceleratorProfile(str(faster)).measure(model, x).values["latency_ms"] < acc.measure(model, x).values["latency_ms"]
    bad = tmp_path / "bad.yaml"
    bad.write_text(spec.replace("frequency_mhz: 500", "frequency_mhz: -1"))
    with pytest.raises(UserError, match="field 'frequency_mhz'"):
        AcceleratorProfile(str(bad))
    bad.write_text(spec + "\nturbo: true\n")
    with pytest.raises(UserError, match="field 'turbo'"):
        AcceleratorProfile(str(bad))


def test_lut_covers_concat_and_depthwise_and_reports_missing_layers(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model, x = concat_cnn().eval(), torch.zeros(1, 3, 16, 16)
    sp = ChannelPruningSpace(model, x)
    table = build_lut(model, sp, build_profile("onnxruntime-cpu", FAST_ORT), x, step=8, n_fit=3)
    ops = {e["key"]["op"] for e in table["entries"]}
    assert {"conv", "dwconv", "linear"} <= ops
    prov = table["provenance"]
    assert {"cpu", "threads", "onnxruntime", "date", "space", "measurements"} <= set(prov)
    lut = LookupTableProfile(table)
    cand = sp.apply(model, sp.uniform(0.5))
    assert lut.measure(cand, x).values["latency_ms"] > 0
    affine = LookupTableProfile(table, fit="affine")
    a = table["affine"]
    assert affine.measure(cand, x).values["latency_ms"] == pytest.approx(a["scale"] * lut.predict(cand, x) + a["constant_ms"])
    r = fidelity(lut, build_profile("onnxruntime-cpu", FAST_ORT), model, sp, x, n=4)
    assert r["n"] == 4 and -1 <= r["kendall_tau"] <= 1 and r["mape_percent"] >= 0
    with pytest.raises(UserError, match="no entry for layer 'conv1'"):
        lut.measure(build_model("resnet20").eval(), torch.zeros(1, 3, 32, 32))


# --- a third-party profile, registered through an entry point --------------------------------

REMOTE_PROFILE = '''
from automc.measure.profiles import DeviceProfile, Measurement
from automc.compress.analysis import analyze


class CallbackProfile(DeviceProfile):
    """Latency from a user callback (standing in for a phone reached over adb)."""

    name = "my-phone"
    metrics = ("latency_ms",)

    def __init__(self, ms_per_mmac=0.05):
        self.ms_per_mmac = float(ms_per_mmac)

    def config(self):
        return {"ms_per_mmac": self.ms_per_mmac}

    def measure(self, model, example_input):
        macs = analyze(model, example_input[:1]).macs
        return Measurement({"latency_ms": macs / 1e6 * self.ms_per_mmac}, {}, 1, {"profile": self.name, "analytic": True})
'''


@pytest.fixture
def third_party(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    (tmp_path / "phone_profiles.py").write_text(textwrap.dedent(REMOTE_PROFILE))
    info = tmp_path / "phone_profiles-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: phone-profiles\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[automc.device_profiles]\nmy-phone = phone_profiles:CallbackProfile\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    refresh()
    yield tmp_path
    sys.modules.pop("phone_profiles", None)
    refresh()


def test_third_party_profile_is_usable_by_name(third_party: Path, r20) -> None:
    model, x = r20
    prof = build_profile("my-phone", {"ms_per_mmac": 0.1})
    check_device_profile(prof, model, x)
    assert prof.measure(model, x).values["latency_ms"] == pytest.approx(analyze(model, x).macs / 1e6 * 0.1)
    env = {"PYTHONPATH": os.pathsep.join([str(third_party), os.environ.get("PYTHONPATH", "")])}
    proc = run_cli("profile", "--model", "resnet20", "--device", "my-phone", "--device-arg", "ms_per_mmac=0.1", "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["values"]["latency_ms"] == pytest.approx(4.0551040)


@pytest.mark.one_pass
def test_profile_cli_errors() -> None:
    assert_user_error(run_cli("profile", "--model", "resnet20", "--device", "tpu-v9"), "unknown device profile 'tpu-v9'", "valid names:", "onnxruntime-cpu")
    assert_user_error(run_cli("profile", "--model", "resnet20", "--device", "onnxruntime-cpu", "--device-arg", "threads=0"), "threads must be >= 1")
    assert_user_error(run_cli("profile", "--model", "resnet20", "--device", "lut", "--device-arg", "table=/nope.json"), "/nope.json does not exist", "build-lut")


def test_measurement_round_trip() -> None:
    m = Measurement({"latency_ms": 1.5}, {"latency_ms": 0.1}, 3, {"a": 1})
    assert Measurement.from_dict(json.loads(json.dumps(m.to_dict()))) == m




# --- hardware-friendly channel counts (automc profile widths) -----------------------------------

STAIRCASE_PROFILE = '''
import math
from torch import nn
from automc.measure.profiles import DeviceProfile, Measurement


class Staircase(DeviceProfile):
    """A runtime with 8-wide vectors: a layer costs ceil(in/8) x ceil(out/8) units."""

    name = "staircase"
    metrics = ("latency_ms",)

    def measure(self, model, example_input):
        layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
        units = sum(math.ceil(getattr(m, "in_channels", getattr(m, "in_features", 0)) / 8) * math.ceil(getattr(m, "out_channels", getattr(m, "out_features", 0)) / 8) for m in layers)
        return Measurement({"latency_ms": 0.01 + 0.1 * units}, {}, 1, {"profile": self.name})
'''


def test_efficient_widths_are_the_right_edges_of_the_latency_staircase() -> None:
    from automc.device_profiles.widths import efficient_widths

    steps = {c: float(-(-c // 8)) for c in range(5, 33)}  # ceil(c / 8): 1 for 5..8, 2 for 9..16, ...
    assert efficient_widths(steps, 0.03) == [8, 16, 24, 32]
    slower = {**steps, 12: 2.5}  # a free count that runs slower than the next step up: never kept
    assert 12 not in efficient_widths(slower, 0.03)
    noisy = {c: v * (1.02 if c % 2 else 1.0) for c, v in steps.items()}  # 2% noise is within tolerance
    assert efficient_widths(noisy, 0.03) == [8, 16, 24, 32]
    in_model = {c: 10.0 + v for c, v in steps.items()}  # a whole model's latency: steps of 1 on 14
    assert efficient_widths(in_model, 0.05, scale=14.0) == [8, 16, 24, 32]
    assert efficient_widths(in_model, 0.15, scale=14.0) == [8, 32]  # a step must save 15% of the model: two steps make one
    assert efficient_widths(in_model, 0.3, scale=14.0) == [32]  # no saving worth a narrower width


@pytest.mark.parametrize("context", ["model", "layer"])
def test_profile_widths_measures_groups_and_the_space_rounds_to_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, context: str) -> None:
    """``automc profile widths`` on a profile whose kernels are 8 wide writes multiples of 8
    per group, measured in the whole model or layer by layer; ``channel_pruning`` with
    ``widths:`` keeps exactly those counts (the nearest), builds them, and refuses a file
    written for another model."""
    from automc.compress.widths_file import FORMAT

    (tmp_path / "stair_profiles.py").write_text(textwrap.dedent(STAIRCASE_PROFILE))
    env = {"PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    out = tmp_path / "widths.json"
    proc = run_cli("profile", "widths", "--model", "small_cnn", "--model-arg", "width=16", "--dataset", "digits", "--device", "stair_profiles:Staircase", "--context", context, "--out", str(out), "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    assert data["format"] == FORMAT and data["measured_on"]["model"] == "small_cnn" and data["context"] == context
    for group, entry in data["groups"].items():
        assert all(w % 8 == 0 for w in entry["widths"]), (group, entry["widths"])
        assert entry["widths"][-1] == entry["channels"] and len(entry["widths"]) >= 2, (group, entry["widths"])
        curve = {int(c): v for c, v in entry["latency_ms"].items()}
        assert sorted(curve) == list(range(min(curve), entry["channels"] + 1))  # every reachable count measured
        assert all(curve[w] < curve[w + 1] for w in entry["widths"][:-1])  # each kept width is a step's right edge
    monkeypatch.syspath_prepend(str(tmp_path))
    torch.manual_seed(0)
    model, x = build_model("small_cnn", in_channels=1, kwargs={"width": 16}).eval(), torch.zeros(1, 1, 8, 8)
    sp = ChannelPruningSpace(model, x, widths=str(out))
    inline = sp.config()["widths"]  # the counts, not the file: a card rebuilds them without it
    assert inline == {"format": FORMAT, "groups": {g: {"widths": e["widths"]} for g, e in data["groups"].items()}}
    assert ChannelPruningSpace(model, x, widths=inline).widths == sp.widths
    for dim in sp.dimensions:
        allowed = sp.widths[dim]
        channels = allowed[-1]
        for ratio in (0.2, 0.3, 0.45, 0.5, 0.7, 1.0):
            kept = sp.keep_count(channels, ratio, dim)
            assert kept in allowed and abs(kept - channels * ratio) == min(abs(w - channels * ratio) for w in allowed)
    pruned = sp.apply(model, sp.uniform(0.45))
    kept_out = {n: m.out_channels for n, m in pruned.named_modules() if isinstance(m, nn.Conv2d)}
    for dim, root in sp._roots.items():  # noqa: SLF001
        assert kept_out[root] in sp.widths[dim]
    with pytest.raises(UserError, match="is not a channel group of this model"):
        ChannelPruningSpace(build_model("resnet20").eval(), torch.zeros(1, 3, 32, 32), widths=str(out))
    with pytest.raises(UserError, match="widths file .* does not exist"):
        ChannelPruningSpace(model, x, widths=str(tmp_path / "none.json"))
    bad = {**data, "groups": {g: {"widths": []} for g in data["groups"]}}
    with pytest.raises(UserError, match="needs a list of positive channel counts"):
        ChannelPruningSpace(model, x, widths=bad)
