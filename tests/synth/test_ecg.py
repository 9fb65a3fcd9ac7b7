"""The ECG simulator, measured from the outside: R peaks (neurokit2), QRS boundaries, PR, ST levels, voltages."""

from __future__ import annotations

import time
from dataclasses import replace
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
from scipy.signal import find_peaks

from medclr.io import read_ecg
from medclr.io.leads import STANDARD_LEADS
from medclr.synth.ecg import WFDB_LEAD_NAMES, downsample, simulate_ecg, write_wfdb
from medclr.synth.state import EcgFindings

FS = 500.0
SEEDS = range(6)
LEAD = {name: i for i, name in enumerate(STANDARD_LEADS)}


def _sim(seed: int, noise: float = 0.0, fs: float = FS, **kwargs: object) -> np.ndarray:
    return simulate_ecg(EcgFindings(noise=noise, **kwargs), np.random.default_rng(seed), fs=fs)  # type: ignore[arg-type]


def _r_peaks(lead: np.ndarray, fs: float = FS) -> np.ndarray:
    nk = pytest.importorskip("neurokit2")
    cleaned = nk.ecg_clean(lead.astype(np.float64), sampling_rate=int(fs))
    _, info = nk.ecg_peaks(cleaned, sampling_rate=int(fs))
    return np.asarray(info["ECG_R_Peaks"])


def _qrs_bounds(sig: np.ndarray, fs: float = FS) -> list[tuple[int, int]]:
    """QRS onset/offset samples of the complete beats: where the spatial velocity exceeds 10 % of its peak."""
    independent = sig[[0, 1, 6, 7, 8, 9, 10, 11]].astype(np.float64)  # I, II, V1-V6
    velocity = np.sqrt((np.diff(independent, axis=1) ** 2).sum(0)) * fs  # mV/s
    peaks, _ = find_peaks(velocity, height=0.4 * velocity.max(), distance=int(0.3 * fs))
    bounds = []
    for p in peaks:
        lo, hi = max(p - int(0.15 * fs), 0), min(p + int(0.2 * fs), velocity.size)
        above = lo + np.flatnonzero(velocity[lo:hi] > 0.1 * velocity[lo:hi].max())
        runs = np.split(above, np.flatnonzero(np.diff(above) > int(0.02 * fs)) + 1)  # bridge gaps < 20 ms
        run = next(r for r in runs if r[0] <= p <= r[-1])
        if run[0] > int(0.45 * fs) and run[-1] < sig.shape[1] - int(0.45 * fs):
            bounds.append((int(run[0]), int(run[-1]) + 1))
    return bounds


def _qrs_ms(sig: np.ndarray) -> float:
    return float(np.median([(off - on) / FS * 1000 for on, off in _qrs_bounds(sig)]))


def _st_levels(sig: np.ndarray) -> np.ndarray:
    """Median ST level per lead at J + 40 ms against the PR segment (mean of QRS onset - 20 .. - 6 ms), mV."""
    levels = []
    for on, off in _qrs_bounds(sig):
        baseline = sig[:, on - int(0.02 * FS) : on - int(0.006 * FS)].mean(axis=1)
        levels.append(sig[:, off + int(0.04 * FS)] - baseline)
    return np.median(levels, axis=0)


def _pr_ms(sig: np.ndarray) -> float:
    """P onset (lead II back to 10 % of the P peak) to QRS onset, median over beats.

    The P peak is the largest |II| 400..40 ms before the QRS, so use it at low rates (<= ~70 bpm), where the
    previous T wave has ended by then.
    """
    ii = sig[LEAD["II"]].astype(np.float64)
    out = []
    for on, _ in _qrs_bounds(sig):
        lo = on - int(0.4 * FS)
        window = np.abs(ii[lo : on - int(0.04 * FS)])
        peak = lo + int(np.argmax(window))
        p_on = peak
        while abs(ii[p_on]) > 0.1 * abs(ii[peak]):
            p_on -= 1
        out.append((on - p_on) / FS * 1000)
    return float(np.median(out))


def _sokolow(sig: np.ndarray) -> float:
    """S(V1) + max(R(V5), R(V6)) within the QRS, median over beats (noise-free: the baseline is 0)."""
    values = []
    for on, off in _qrs_bounds(sig):
        qrs = sig[:, on:off]
        values.append(max(0.0, -qrs[LEAD["V1"]].min()) + max(qrs[LEAD["V5"]].max(), qrs[LEAD["V6"]].max()))
    return float(np.median(values))


# --- basics -----------------------------------------------------------------------------------------------------


def test_shape_dtype_and_range() -> None:
    sig = _sim(0, noise=1.0)
    assert sig.shape == (12, 5000) and sig.dtype == np.float32
    assert np.isfinite(sig).all()
    assert 0.5 < np.ptp(sig[LEAD["II"]]) < 5.0
    assert _sim(0, fs=100.0).shape == (12, 1000)
    assert simulate_ecg(EcgFindings(), np.random.default_rng(0), fs=250.0, duration_s=2.0).shape == (12, 500)


def test_deterministic_per_seed() -> None:
    f = EcgFindings(rhythm="AFIB", heart_rate=90.0, sttc=True)
    a = simulate_ecg(f, np.random.default_rng(7))
    b = simulate_ecg(f, np.random.default_rng(7))
    c = simulate_ecg(f, np.random.default_rng(8))
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 0.1


def test_noise_is_drawn_after_the_clean_signal_and_scales_linearly() -> None:
    clean, one, two = (_sim(3, noise=n) for n in (0.0, 1.0, 2.0))
    np.testing.assert_allclose(two - clean, 2.0 * (one - clean), atol=1e-4)
    assert 0.005 < np.std(one - clean) < 0.3


@pytest.mark.parametrize("noise", [0.0, 1.5])
def test_limb_leads_obey_einthoven_and_goldberger(noise: float) -> None:
    sig = _sim(1, noise=noise, mi_territory="inferior", mi_acute=True).astype(np.float64)
    lead_i, lead_ii = sig[LEAD["I"]], sig[LEAD["II"]]
    np.testing.assert_allclose(sig[LEAD["III"]], lead_ii - lead_i, atol=1e-5)
    np.testing.assert_allclose(sig[LEAD["aVR"]], -(lead_i + lead_ii) / 2, atol=1e-5)
    np.testing.assert_allclose(sig[LEAD["aVL"]], lead_i - lead_ii / 2, atol=1e-5)
    np.testing.assert_allclose(sig[LEAD["aVF"]], lead_ii - lead_i / 2, atol=1e-5)


def test_realistic_normal_amplitudes_and_intervals() -> None:
    for seed in SEEDS:
        sig = _sim(seed, heart_rate=70.0)
        r_ii = np.median([sig[LEAD["II"], on:off].max() for on, off in _qrs_bounds(sig)])
        assert 0.5 < r_ii < 2.2, seed
        assert 75 < _qrs_ms(sig) < 112, seed
        assert 115 < _pr_ms(sig) < 205, seed


def test_simulation_is_fast() -> None:
    rng = np.random.default_rng(0)
    simulate_ecg(EcgFindings(rhythm="STACH", heart_rate=130.0), rng)
    start = time.perf_counter()
    for _ in range(10):
        simulate_ecg(EcgFindings(rhythm="STACH", heart_rate=130.0, lvh=True), rng)
    assert (time.perf_counter() - start) / 10 < 0.2  # typically a few ms


# --- rhythm -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("rhythm", "rate"), [("SR", 72.0), ("SBRAD", 46.0), ("STACH", 128.0), ("SR", 95.0)])
def test_heart_rate_from_r_peaks(rhythm: str, rate: float) -> None:
    for seed in range(3):
        sig = _sim(seed, noise=1.0, rhythm=rhythm, heart_rate=rate)
        peaks = _r_peaks(sig[LEAD["II"]])
        measured = 60.0 / (np.diff(peaks).mean() / FS)
        assert abs(measured - rate) < 5.0, (seed, measured)


def test_afib_is_irregularly_irregular_without_p_waves() -> None:
    for seed in range(3):
        sr = _sim(seed, noise=0.5, rhythm="SR", heart_rate=90.0)
        af = _sim(seed, noise=0.5, rhythm="AFIB", heart_rate=90.0)
        cv = [np.std(np.diff(p)) / np.mean(np.diff(p)) for p in (_r_peaks(s[LEAD["II"]]) for s in (sr, af))]
        assert cv[0] < 0.06 and cv[1] > 0.12 and cv[1] > 3 * cv[0], (seed, cv)
    # P waves: the ensemble average of lead II 200..60 ms before the QRS (beats after an RR > 0.8 s, so that no T
    # wave reaches in) has a P bump in sinus rhythm only; f-waves are not locked to the QRS and average out
    for seed in range(3):
        for rhythm, present in (("SR", True), ("AFIB", False)):
            sig = _sim(seed, rhythm=rhythm, heart_rate=65.0)
            ii = sig[LEAD["II"]]
            onsets = [on for on, _ in _qrs_bounds(sig)]
            windows = [ii[b - int(0.2 * FS) : b - int(0.06 * FS)] for a, b in pairwise(onsets) if b - a > 0.8 * FS]
            assert len(windows) >= 3
            assert (np.abs(np.mean(windows, axis=0)).max() > 0.05) == present, (seed, rhythm)


# --- conduction -------------------------------------------------------------------------------------------------


def test_bundle_branch_blocks_widen_the_qrs() -> None:
    for seed in SEEDS:
        norm = _qrs_ms(_sim(seed))
        lbbb = _qrs_ms(_sim(seed, conduction="LBBB"))
        rbbb = _qrs_ms(_sim(seed, conduction="RBBB"))
        assert norm < 112 and lbbb >= 120 and rbbb >= 120, (seed, norm, lbbb, rbbb)
        assert min(lbbb, rbbb) - norm > 20


def test_bundle_branch_block_morphology() -> None:
    for seed in SEEDS:
        lbbb = _sim(seed, conduction="LBBB")
        on, off = _qrs_bounds(lbbb)[0]
        v1, v6 = lbbb[LEAD["V1"], on:off], lbbb[LEAD["V6"], on:off]
        assert v1.min() < -0.5 and v1.max() < 0.3 * -v1.min(), seed  # deep S / QS in V1
        assert v6.max() > 0.4 and v6.min() > -0.25 * v6.max(), seed  # broad R without q in V6
        rbbb = _sim(seed, conduction="RBBB")
        on, off = _qrs_bounds(rbbb)[0]
        tail = slice(off - int(0.035 * FS), off)
        assert rbbb[LEAD["V1"], tail].max() > 0.2, seed  # terminal R' in V1
        assert rbbb[LEAD["I"], tail].min() < -0.1 and rbbb[LEAD["V6"], tail].min() < -0.1, seed  # late wide S


def test_first_degree_av_block_prolongs_pr() -> None:
    for seed in SEEDS:
        normal = _pr_ms(_sim(seed, heart_rate=60.0))
        avb1 = _pr_ms(_sim(seed, heart_rate=60.0, conduction="AVB1"))
        assert normal < 205 and avb1 > 210 and avb1 - normal > 30, (seed, normal, avb1)


# --- ischaemia, infarction, hypertrophy ---------------------------------------------------------------------------

INFERIOR = [LEAD[n] for n in ("II", "III", "aVF")]
ANTERIOR = [LEAD[n] for n in ("V2", "V3")]


def test_st_elevation_follows_the_infarct_territory() -> None:
    for seed in SEEDS:
        anterior = _st_levels(_sim(seed, mi_territory="anterior", mi_acute=True))
        inferior = _st_levels(_sim(seed, mi_territory="inferior", mi_acute=True))
        normal = _st_levels(_sim(seed))
        assert anterior[ANTERIOR].mean() > 0.1 and anterior[INFERIOR].mean() < 0.05, (seed, anterior)
        assert inferior[INFERIOR].mean() > 0.1 and inferior[ANTERIOR].mean() < 0.05, (seed, inferior)
        assert inferior[LEAD["aVL"]] < 0.0, seed  # reciprocal depression
        assert np.abs(normal).max() < 0.12, (seed, normal)


def test_old_mi_has_q_waves_and_no_st_elevation() -> None:
    for seed in SEEDS:
        sig = _sim(seed, mi_territory="inferior", mi_acute=False)
        on, off = _qrs_bounds(sig)[0]
        q, r = sig[LEAD["aVF"], on : on + int(0.04 * FS)].min(), sig[LEAD["aVF"], on:off].max()
        assert q < -0.1 and -q > 0.25 * r, seed  # pathological Q in aVF (deeper than a quarter of the R)
        assert sig[LEAD["III"], on:off].max() < 0.15, seed  # QS in III
        assert _st_levels(sig)[INFERIOR].mean() < 0.08, seed


def test_sttc_depresses_lateral_st() -> None:
    for seed in SEEDS:
        st = _st_levels(_sim(seed, sttc=True))
        assert st[[LEAD["V5"], LEAD["V6"], LEAD["I"]]].mean() < -0.04 and st[LEAD["aVR"]] > 0.0, (seed, st)


def test_sokolow_lyon_separates_lvh_from_normal() -> None:
    for seed in range(10):
        assert _sokolow(_sim(seed, lvh=True)) > 2.9, seed  # LVH: 3.0-5.0 mV by design
        assert _sokolow(_sim(seed)) < 3.9, seed  # others below 3.8 mV: the ranges overlap, as in real ECGs
        assert _sokolow(_sim(seed, conduction="LBBB")) < 3.9, seed
    mean_lvh = np.mean([_sokolow(_sim(seed, lvh=True)) for seed in range(10)])
    mean_norm = np.mean([_sokolow(_sim(seed)) for seed in range(10)])
    assert mean_lvh > mean_norm + 0.8


# --- files ------------------------------------------------------------------------------------------------------


def test_write_wfdb_round_trips_through_read_ecg(tmp_path: Path) -> None:
    sig = _sim(2, noise=1.0, rhythm="AFIB", heart_rate=100.0)
    write_wfdb(tmp_path / "00001_hr", sig, FS, comments=["synthetic"])
    header = (tmp_path / "00001_hr.hea").read_text()
    assert all(f" {name}" in header for name in WFDB_LEAD_NAMES) and "1000" in header and "mV" in header
    back, meta = read_ecg(tmp_path / "00001_hr")
    assert back.shape == sig.shape and meta.fs == FS
    np.testing.assert_allclose(back, sig, atol=0.5e-3 + 1e-6)


def test_write_wfdb_clips_out_of_range_values(tmp_path: Path) -> None:
    sig = np.zeros((12, 100), dtype=np.float32)
    sig[0, 10] = 50.0
    write_wfdb(tmp_path / "rec", sig, FS)
    back, _ = read_ecg(tmp_path / "rec")
    assert back[0, 10] == pytest.approx(32.767, abs=1e-3)


def test_downsample_to_100_hz_keeps_the_waveform() -> None:
    sig = _sim(5, noise=0.5, heart_rate=80.0)
    low = downsample(sig, 500, 100)
    assert low.shape == (12, 1000) and low.dtype == np.float32
    r = np.corrcoef(low[LEAD["V3"]], sig[LEAD["V3"], ::5])[0, 1]
    assert r > 0.95
    rate = 60.0 / (np.diff(_r_peaks(low[LEAD["II"]], 100.0)).mean() / 100.0)
    assert abs(rate - 80.0) < 5.0


def test_class_preview_renders(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from medclr.synth.preview_ecg import PREVIEW_CLASSES, ecg_class_plots_png

    subset = dict(list(PREVIEW_CLASSES.items())[:2])
    out = ecg_class_plots_png(tmp_path / "ecg.png", seed=0, classes=subset, dpi=40)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000


def test_findings_replace_keeps_clean_signal() -> None:
    f = EcgFindings(lvh=True, noise=1.0)
    a = simulate_ecg(replace(f, noise=0.0), np.random.default_rng(11))
    b = simulate_ecg(replace(f, noise=0.0), np.random.default_rng(11))
    np.testing.assert_array_equal(a, b)
