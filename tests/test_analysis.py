"""The report's statistics against hand-computed and scipy reference values, on small
synthetic per-run tables (no MLflow, no training)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from bench.report.numbers import checklist, verdicts
from bench.report.numbers import stats as analysis
from bench.report.numbers.collect import Selection, comparison_keys, what_differs
from bench.report.numbers.findings import Findings
from bench.report.numbers.rows import THRESHOLDS, per_run, setting_numbers
from bench.report.numbers.stats import NOT_TESTED, SAME_SPEED, UNDECIDED
from bench.report.numbers.tables import agreement, summary_table
from bench.report.pages import appendix, assemble, front, sentences
from bench.report.pages.render import Section, Table

T2 = stats.t.ppf(0.975, 2)  # the t quantile of a 3-run interval


def rows_of(*records: dict) -> pd.DataFrame:
    """A per_run-shaped table: one dict per run, defaults for what a test does not set."""
    base = {
        "preset": "p",
        "comparison": "s",
        "group": "p",
        "device": "cpu",
        "status": "FINISHED",
        "test_accuracy": 0.98,
        "final_train_accuracy": 0.99,
        "first_epoch_s": 3.0,
        "steady_epoch_s": 2.0,
        "samples_per_s": 1000.0,
        "steady_samples_per_s": 1200.0,
        "train_time_s": 10.0,
        "total_time_s": 12.0,
        "peak_rss_mb": 500.0,
        "time_to_target_s": 5.0,
    }
    return pd.DataFrame([{**base, **r} for r in records])


def trio(impl: str, steady, acc=(0.98, 0.98, 0.98), target=(5.0, 5.0, 5.0)) -> list[dict]:
    return [
        {"implementation": impl, "seed": s, "steady_epoch_s": t, "test_accuracy": a,
         "time_to_target_s": tt}
        for s, t, a, tt in zip(range(3), steady, acc, target, strict=True)
    ]  # fmt: skip


# --- intervals -----------------------------------------------------------------------------


def test_t_interval_matches_the_hand_computation():
    mean, low, high = analysis.t_interval([1.0, 2.0, 3.0])  # mean 2, sd 1
    half = T2 / np.sqrt(3)
    assert (mean, low, high) == pytest.approx((2.0, 2.0 - half, 2.0 + half))
    assert np.isnan(analysis.t_interval([4.0])[1:]).all()


def test_ratio_interval_is_a_back_transformed_t_interval_on_the_logs():
    ratios = [1.5, 2.0, 1.8]
    logs = np.log(ratios)
    centre = logs.mean()
    half = T2 * logs.std(ddof=1) / np.sqrt(3)
    expected = (np.exp(centre), np.exp(centre - half), np.exp(centre + half))
    assert analysis.ratio_interval(ratios) == pytest.approx(expected)
    assert expected[0] == pytest.approx((1.5 * 2.0 * 1.8) ** (1 / 3))  # the geometric mean
    one = analysis.ratio_interval([1.7])
    assert one[0] == pytest.approx(1.7) and np.isnan(one[1:]).all()


def simulated_triple_intervals(rng, n_triples: int, true_ratio: float) -> np.ndarray:
    """(low, high) of the paired ratio interval for simulated 3-seed comparisons: per seed a
    host factor shared by both implementations of the pair, a per-run factor each, and 5
    log-normal epochs per run whose first (warm-up) is dropped and the rest's median taken."""
    seeds, epochs = 3, 5
    host = rng.normal(0, 0.30, (n_triples, seeds, 1))
    a = np.log(1.0) + host + rng.normal(0, 0.10, (n_triples, seeds, 1))
    b = np.log(true_ratio) + host + rng.normal(0, 0.10, (n_triples, seeds, 1))
    a_epochs = np.exp(a + rng.normal(0, 0.05, (n_triples, seeds, epochs)))
    b_epochs = np.exp(b + rng.normal(0, 0.05, (n_triples, seeds, epochs)))
    steady_a = np.median(a_epochs[..., 1:], axis=-1)
    steady_b = np.median(b_epochs[..., 1:], axis=-1)
    return np.array([analysis.ratio_interval(r)[1:] for r in steady_b / steady_a])


def test_paired_ratio_interval_covers_the_true_ratio_95_percent_of_the_time_at_3_runs():
    rng = np.random.default_rng(20240611)
    true_ratio = 1.6
    intervals = simulated_triple_intervals(rng, 4000, true_ratio)
    coverage = np.mean((intervals[:, 0] <= true_ratio) & (true_ratio <= intervals[:, 1]))
    assert 0.93 <= coverage <= 0.97, coverage


def test_censored_median_counts_never_reached_as_infinite():
    inf, nan = np.inf, np.nan
    assert analysis.censored_median([1.0, 2.0, inf]) == (2.0, 2, 3)
    assert analysis.censored_median([1.0, inf, inf]) == (inf, 1, 3)
    assert analysis.censored_median([1.0, 2.0, inf, inf])[0] == inf  # half never reached it
    assert analysis.censored_median([1.0, 2.0, 3.0, inf]) == (2.5, 3, 4)
    median, reached, n = analysis.censored_median([nan, nan])
    assert np.isnan(median) and (reached, n) == (0, 0)


# --- verdict words -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("low", "high", "word"),
    [
        (1.0001, 2.0, "faster"),
        (1.0, 2.0, UNDECIDED),  # touching 1 does not exclude it
        (0.5, 0.9999, "slower"),
        (0.5, 1.0, UNDECIDED),
        (0.95, 1.05, SAME_SPEED),  # inside 10% either way
        (1 / 1.1, 1.1, SAME_SPEED),  # the margin's edges are inside
        (1.02, 1.08, SAME_SPEED),  # excludes 1, yet within the margin: the same speed
        (0.9, 1.05, UNDECIDED),  # 0.9 < 1/1.1: reaches outside the margin
        (np.nan, np.nan, NOT_TESTED),  # one run: no interval, nothing tested
    ],
)
def test_speed_verdict_needs_an_interval_that_excludes_one(low, high, word):
    assert analysis.speed_verdict(low, high) == word


@pytest.mark.parametrize(
    ("low", "high", "word"),
    [
        (-0.4, 0.4, "equivalent"),  # the margin's edges are inside
        (0.1, 0.3, "equivalent"),  # excludes 0, yet below what the test set resolves
        (-0.41, 0.3, UNDECIDED),
        (0.1, 0.5, "more accurate"),
        (-0.5, -0.1, "less accurate"),
        (0.0, 0.5, UNDECIDED),
        (np.nan, np.nan, NOT_TESTED),
    ],
)
def test_accuracy_verdict_at_its_boundaries(low, high, word):
    assert analysis.accuracy_verdict(low, high, margin=0.4) == word


def test_equivalence_margin_is_the_binomial_noise_floor_of_a_difference_in_points():
    # 1.96 * sqrt(2 * 0.98 * 0.02 / 10000) = 0.0038806 -> 0.388 points
    assert analysis.equivalence_margin(0.98) == pytest.approx(0.38806, abs=1e-4)
    assert analysis.equivalence_margin(0.98) == pytest.approx(
        100 * 1.959964 * np.sqrt(2) * analysis.noise_floor(0.98), rel=1e-5
    )


def test_mcnemar_is_the_exact_binomial_test_on_the_discordant_images():
    labels = np.zeros(100, dtype=int)
    a = np.zeros(100, dtype=int)
    b = np.zeros(100, dtype=int)
    a[:12] = 1  # a wrong on 12 images
    b[10:30] = 1  # b wrong on 20, 2 of them where a is wrong too
    table = agreement({"a": a, "b": b}, labels)
    r = table.iloc[0]
    assert (r["only A right"], r["only B right"]) == (18, 10)
    assert r["McNemar p"] == pytest.approx(stats.binomtest(18, 28, 0.5).pvalue)
    assert analysis.mcnemar_p(labels == labels, labels == labels) == 1.0


# --- time to accuracy from the histories -------------------------------------------------


def history(run_id: str, val_acc, epoch_s=1.0) -> list[dict]:
    out = []
    for step, acc in enumerate(val_acc, start=1):
        out.append({"run_id": run_id, "key": "epoch_time_s", "step": step, "value": epoch_s})
        if acc is not None:
            out.append({"run_id": run_id, "key": "val_accuracy", "step": step, "value": acc})
    return out


@pytest.fixture
def three_runs():
    """r1 reaches 0.95 at epoch 2 and 0.97 at 3; r2 reaches 0.95 only; r3 has no validation."""
    runs = pd.DataFrame(
        {
            "run_id": ["r1", "r2", "r3"],
            "run_name": ["x-numpy-s0", "x-numpy-s1", "x-numpy-s2"],
            "status": "FINISHED",
            "tags.implementation": "numpy",
            "tags.device": "cpu",
            "tags.preset": "x",
            "params.seed": ["0", "1", "2"],
            "comparison": "s",
            "params.dataset.val_size": ["5000", "5000", "0"],
            "metrics.time_to_target_s": [3.0, np.nan, np.nan],
        }
    )
    hist = pd.DataFrame(
        history("r1", [0.9, 0.955, 0.975])
        + history("r2", [0.9, 0.951, 0.96], epoch_s=2.0)
        + history("r3", [None, None, None])
    )
    return runs, hist


def test_time_to_accuracy_is_censored_not_dropped(three_runs):
    rows = per_run(*three_runs).set_index("run_id")
    assert rows.has_val.tolist() == [True, True, False]
    assert rows.loc["r1", ["to_0.95", "to_0.97", "to_0.98"]].tolist() == [2.0, 3.0, np.inf]
    assert rows.loc["r2", ["to_0.95", "to_0.96", "to_0.97"]].tolist() == [4.0, 6.0, np.inf]
    assert rows.loc["r3", [f"to_{t:.3g}" for t in THRESHOLDS]].isna().all()
    assert rows.time_to_target_s.tolist()[:2] == [3.0, np.inf]
    assert np.isnan(rows.loc["r3", "time_to_target_s"])  # no validation set, not "never"


def test_a_higher_threshold_never_shows_a_shorter_median_time():
    # Averaging only the runs that reached a threshold (the old table) reads 4.0 s for 95%
    # and 2.0 s for 97%: the one fast run is all that is left at 97%.
    cols = {"to_0.95": [1.0, 1.0, 10.0], "to_0.96": [1.5, 9.0, np.inf]}
    cols |= {"to_0.97": [2.0, np.inf, np.inf], "to_0.975": [np.inf] * 3, "to_0.98": [np.nan] * 3}
    rows = rows_of(*({"implementation": "numpy", "seed": s} for s in range(3))).assign(**cols)
    table = assemble.time_to_accuracy_table(rows).iloc[0]
    assert table["to_0.95"] == "1 s (3/3 reached)"
    assert table["to_0.96"] == "9 s (2/3 reached)"
    assert table["to_0.97"] == "not reached (1/3 reached)"
    assert table["to_0.975"] == "not reached (0/3 reached)"
    assert table["to_0.98"] == "no validation set"
    medians = [analysis.censored_median(rows[c])[0] for c in ("to_0.95", "to_0.96", "to_0.97")]
    assert medians == sorted(medians)


# --- verdicts.csv ----------------------------------------------------------------------------


@pytest.fixture
def compared():
    """numpy clearly faster than keras; tf_tape like numpy; accuracies apart by known points."""
    return rows_of(
        *trio("keras", [3.0, 3.3, 2.9], acc=(0.970, 0.972, 0.971), target=(9.0, np.inf, 8.0)),
        *trio("numpy", [1.5, 1.6, 1.5], acc=(0.980, 0.979, 0.981)),
        *trio("tf_tape", [1.4, 1.9, 1.5], acc=(0.9801, 0.9789, 0.9812)),
        {"implementation": "numpy", "seed": 7, "steady_epoch_s": 9.0},  # no partner: unpaired
    )


def test_verdicts_table_columns_pairs_and_values(compared):
    table = verdicts.verdicts(compared)
    assert list(table.columns[: len(verdicts.VERDICT_COLUMNS)]) == verdicts.VERDICT_COLUMNS
    pairs = table[["a", "b"]].drop_duplicates().apply(tuple, axis=1).tolist()
    assert pairs == [("numpy", "tf_tape"), ("numpy", "keras"), ("tf_tape", "keras")]
    assert (table.n == 3).all()  # seed 7 ran for numpy only
    row = table.set_index(["a", "b", "quantity"]).loc
    speed = row["numpy", "keras", "epoch_time"]
    expected = analysis.ratio_interval(np.array([3.0, 3.3, 2.9]) / [1.5, 1.6, 1.5])
    assert (speed.estimate, speed.ci_low, speed.ci_high) == pytest.approx(expected)
    assert speed.verdict == "faster" and speed.ci_low > 1
    assert row["numpy", "tf_tape", "epoch_time"].verdict == UNDECIDED
    diff = 100 * (np.array([0.980, 0.979, 0.981]) - [0.970, 0.972, 0.971])  # 1.0, 0.7, 1.0
    half = T2 * diff.std(ddof=1) / np.sqrt(3)
    acc = row["numpy", "keras", "test_accuracy"]
    assert (acc.estimate, acc.ci_low, acc.ci_high) == pytest.approx((0.9, 0.9 - half, 0.9 + half))
    assert acc.verdict == "more accurate"
    assert row["tf_tape", "keras", "test_accuracy"].verdict == "more accurate"
    assert row["numpy", "tf_tape", "test_accuracy"].verdict == "equivalent"


def test_a_censored_time_to_target_gives_no_interval_and_no_claim(compared):
    row = verdicts.verdicts(compared).set_index(["a", "b", "quantity"]).loc
    censored = row["numpy", "keras", "time_to_target"]
    assert np.isnan(censored.ci_low) and np.isnan(censored.ci_high)
    assert censored.estimate == 9.0 / 5.0  # medians with the censored run as +inf: 9 / 5
    assert censored.verdict == NOT_TESTED
    assert (censored.reached_a, censored.runs_a, censored.reached_b, censored.runs_b) == (
        3,
        3,
        2,
        3,
    )
    table = verdicts.verdicts(compared)
    whole = table[
        (table.a == "numpy") & (table.b == "keras") & (table.quantity == "time_to_target")
    ]
    assert sentences.reason_text(whole.iloc[0]) == "not every run reached it: numpy 3/3, keras 2/3"
    reached = row["numpy", "tf_tape", "time_to_target"]
    # equal times in every seed: the interval is [1, 1], inside the 10% margin
    assert reached.estimate == pytest.approx(1.0) and reached.verdict == SAME_SPEED


def test_one_paired_run_has_no_interval_and_says_so():
    rows = rows_of(
        {"implementation": "keras", "seed": 0, "steady_epoch_s": 4.0, "time_to_target_s": np.nan},
        {"implementation": "numpy", "seed": 0, "steady_epoch_s": 1.0, "time_to_target_s": np.nan},
    )
    table = verdicts.verdicts(rows)
    assert (table.n == 1).all() and table[["ci_low", "ci_high"]].isna().all().all()
    assert (table.verdict == NOT_TESTED).all()
    speed, target, _ = (sentences.verdict_sentence(r) for r in table.itertuples())
    assert speed == "numpy vs keras, steady epoch: not tested (1 seed; 4.00x)"
    assert target == "numpy vs keras, time to target: no validation set"


def test_when_no_run_reaches_the_target_the_sentence_says_so_without_a_ratio():
    never = (np.inf, np.inf, np.inf)
    rows = rows_of(*trio("keras", [2, 2, 2], target=never), *trio("numpy", [1, 1, 1], target=never))
    table = verdicts.verdicts(rows)
    row = table[table.quantity == "time_to_target"].iloc[0]
    assert np.isnan(row.estimate) and row.verdict == NOT_TESTED
    assert sentences.verdict_sentence(row) == (
        "numpy vs keras, time to target: not tested (no run reached it: numpy 0/3, keras 0/3)"
    )


def test_summary_steady_epoch_is_a_geometric_mean_with_a_positive_interval():
    # two runs 0.14 s and 0.36 s: the arithmetic t-interval reaches -1.15 s
    rows = rows_of(*trio("tf_tape", [0.14, 0.36, np.nan])[:2])
    row = summary_table(rows).iloc[0]
    assert row.steady_epoch_s_geomean == pytest.approx(np.sqrt(0.14 * 0.36))
    half = stats.t.ppf(0.975, 1) * np.log(0.36 / 0.14) / np.sqrt(2) / np.sqrt(2)
    low, high = np.exp(np.log(0.14 * 0.36) / 2 - half), np.exp(np.log(0.14 * 0.36) / 2 + half)
    assert (row.steady_epoch_s_ci_low, row.steady_epoch_s_ci_high) == pytest.approx((low, high))
    assert low > 0
    assert (row.time_to_target_s_median, row.time_to_target_reached) == (5.0, 2)


def test_verdict_sentences():
    def sentence(**kw):
        base = {"preset": "p", "a": "numpy", "b": "keras", "n": 3, "margin": 0.39,
                **verdicts.REASONS, "measured": 3}  # fmt: skip
        return sentences.verdict_sentence(pd.Series({**base, **kw}))

    speed = {"quantity": "epoch_time"}
    assert sentence(**speed, estimate=1.7, ci_low=1.4, ci_high=2.1, verdict="faster") == (
        "numpy 1.70x faster than keras [1.40, 2.10] (steady epoch, 3 seeds)"
    )
    assert sentence(**speed, estimate=0.5, ci_low=0.4, ci_high=0.8, verdict="slower") == (
        "keras 2.00x faster than numpy [1.25, 2.50] (steady epoch, 3 seeds)"
    )
    assert sentence(**speed, estimate=1.16, ci_low=0.91, ci_high=1.53, verdict=UNDECIDED) == (
        "numpy vs keras: undecided (1.16x [0.91, 1.53]; steady epoch, 3 seeds)"
    )
    acc = {"quantity": "test_accuracy"}
    assert sentence(**acc, estimate=0.05, ci_low=-0.1, ci_high=0.2, verdict="equivalent") == (
        "numpy vs keras: test accuracy equivalent within ±0.39 points "
        "(+0.05 [-0.10, +0.20] points, 3 seeds)"
    )
    assert sentence(**acc, estimate=-0.9, ci_low=-1.2, ci_high=-0.5, verdict="less accurate") == (
        "keras more accurate than numpy by 0.90 points [0.50, 1.20] (3 seeds)"
    )


def test_written_tables(compared, tmp_path):
    found = Findings(
        selection=Selection(mlflow_runs(), "test", "test"),
        hist=pd.DataFrame(columns=["run_id", "key", "step", "value"]),
        rows=compared,
        verdicts=verdicts.verdicts(compared),
        summary=summary_table(compared),
        warnings=[],
    )
    assemble.write_tables(found, found.runs, tmp_path)
    v_path, s_path = tmp_path / "verdicts.csv", tmp_path / "summary.csv"
    assert len(pd.read_csv(tmp_path / "runs.csv")) == 3
    written = pd.read_csv(v_path)
    assert list(written.columns) == verdicts.VERDICT_COLUMNS
    assert len(written) == 3 * 3  # pairs x quantities
    assert set(written.verdict) <= {
        "faster", "slower", "more accurate", "less accurate", UNDECIDED, "equivalent",
        NOT_TESTED, SAME_SPEED,
    }  # fmt: skip
    summary = pd.read_csv(s_path)
    assert summary.implementation.tolist() == ["numpy", "tf_tape", "keras"]
    keras = summary.set_index("implementation").loc["keras"]
    assert keras.runs == 3 and keras.time_to_target_s_median == 9.0
    assert keras.time_to_target_reached == 2
    geo = analysis.ratio_interval([3.0, 3.3, 2.9])
    assert (keras.steady_epoch_s_geomean, keras.steady_epoch_s_ci_low) == pytest.approx(geo[:2])
    assert summary.set_index("implementation").loc["numpy", "runs"] == 4


# --- checklist -------------------------------------------------------------------------------


def mlflow_runs(n: int = 3, **tags) -> pd.DataFrame:
    """An MLflow-shaped frame of n finished runs with everything the checklist looks for."""
    return pd.DataFrame(
        {
            "run_id": [f"r{i}" for i in range(n)],
            "run_name": [f"p-numpy-s{i}" for i in range(n)],
            "status": "FINISHED",
            "tags.device_name": "cpu",
            "tags.threads": "2",
            "tags.preset": "keras_dense512",
            "params.seed": [str(i) for i in range(n)],
            "params.optimizer.lr": "0.001",
            "params.model.hidden": "[512]",
            "params.dataset.val_size": "5000",
            "params.dataset.split_seed": "0",
            "metrics.train_time_s": 1.0,
            "metrics.final_val_accuracy": 0.97,
            "tags.hydra_overrides": "implementation=numpy",
            "tags.dataset_digest": "abc",
            "tags.git_commit": "deadbeef",
            "tags.git_dirty": "false",
            **tags,
        }
    )


def items(runs: pd.DataFrame, rows: pd.DataFrame) -> dict[str, tuple[bool, str]]:
    return {item: (ok, detail) for item, ok, detail in checklist.checklist(runs, rows)}


def test_checklist_passes_for_a_complete_selection(compared):
    rows = compared[compared.seed != 7]
    result = items(mlflow_runs(), rows)
    assert all(ok for ok, _ in result.values()), result
    assert result["Hyperparameters not chosen on the test set"][1] == (
        "no tuning run in this selection; keras_dense512: published tutorial settings"
    )


def test_checklist_tells_what_is_missing(compared):
    runs = mlflow_runs()
    runs.loc[0, "tags.git_dirty"] = "true"
    runs.loc[1, "status"] = "FAILED"
    runs.loc[2, "params.seed"] = None
    few = compared[compared.seed != 2]  # 2 runs per row: no t-interval worth the name at 3
    result = items(runs, few)
    assert result["Runs per row >= 3"][0] is False
    assert "keras: 2" in result["Runs per row >= 3"][1]
    assert result["One commit, recorded, tree clean"][0] is False
    assert "p-numpy-s0" in result["One commit, recorded, tree clean"][1]
    assert result["Every selected run finished"] == (False, "not finished: p-numpy-s1 (FAILED)")
    assert result["Seeds recorded"][0] is False
    single = compared[compared.seed == 0]
    assert items(runs, single)["95% CI for every row (accuracy and epoch time)"][0] is False


def test_checklist_says_tuned_on_validation_and_never_ticks_it_blindly(compared):
    tuned = mlflow_runs(**{"tags.preset": "tune"})
    ok, detail = items(tuned, compared)["Hyperparameters not chosen on the test set"]
    assert ok and "tuned on validation (final_val_accuracy) in 3 tuning runs" == detail
    blind = mlflow_runs(**{"params.dataset.val_size": "0", "metrics.final_val_accuracy": np.nan})
    blind["tags.hydra_overrides"] = "hydra/sweeper=optuna optimizer.lr=0.003"
    ok, detail = items(blind, compared)["Hyperparameters not chosen on the test set"]
    assert not ok and "3 of 3 tuning runs have no validation objective" in detail


def test_contended_epochs_are_set_aside_from_the_steady_epoch(three_runs):
    """r1's epochs 2-4 take 1, 3 (others used 1.2 cores meanwhile) and 1 s: the steady epoch is
    the median of the calm ones; r2 is contended throughout and keeps all its epochs."""
    runs, _ = three_runs
    times = {"r1": [5.0, 1.0, 3.0, 1.0], "r2": [5.0, 2.0, 4.0, 4.0], "r3": [5.0, 1.0, 1.0, 1.0]}
    others = {"r1": [0, 0, 1.2, 0.1], "r2": [0.5, 0.5, 0.5, 0.5], "r3": [0, 0, 0, 0]}
    hist = pd.DataFrame(
        [
            {"run_id": r, "key": key, "step": step, "value": values[r][step - 1]}
            for r in times
            for key, values in (("epoch_time_s", times), ("host_other_cores", others))
            for step in range(1, 5)
        ]
    )
    rows = per_run(runs, hist).set_index("run_id")
    assert rows.steady_epoch_s.tolist() == [1.0, 4.0, 1.0]  # r1 without its 3 s epoch
    assert rows.contended_epochs.tolist() == [1, 3, 0]
    assert rows.all_contended.tolist() == [False, True, False]


def test_seeds_contended_throughout_are_set_aside_from_speed_verdicts(compared):
    """Two of five seeds ran while the host was busy: the speed verdict uses the three calm
    seeds and says so; accuracy keeps all five."""
    rows = compared.copy()
    extra = rows[rows.seed.isin(rows.seed.unique()[:2])].assign(
        seed=lambda d: d.seed + 100, steady_epoch_s=lambda d: d.steady_epoch_s * 9
    )
    rows = pd.concat([rows.assign(all_contended=False), extra.assign(all_contended=True)])
    v = verdicts.verdicts(rows)
    speed = v[(v.quantity == "epoch_time")].iloc[0]
    acc = v[(v.quantity == "test_accuracy")].iloc[0]
    assert (speed.a, speed.b, speed.n, acc.n) == ("numpy", "tf_tape", 3, 5)
    assert speed.set_aside == 2 and speed.contended == 0
    assert "2 contended seed(s) set aside" in sentences.verdict_sentence(speed)


def test_too_few_calm_seeds_make_no_speed_claim(compared):
    """Every seed but one ran on a busy host: no interval, no claim, and the note says why."""
    rows = compared.assign(all_contended=lambda d: d.seed != 0)
    v = verdicts.verdicts(rows)
    speed = v[v.quantity == "epoch_time"]
    assert speed.ci_low.isna().all() and (speed.verdict == NOT_TESTED).all()
    assert (speed.contended == 2).all() and (speed.set_aside == 0).all()
    said = [sentences.reason_text(r) for r in speed.itertuples()]
    assert all(r == "host contended in 2 of 3 seeds" for r in said), said
    assert (v[v.quantity == "test_accuracy"].n == 3).all()


def test_comparisons_are_named_by_what_sets_them_apart():
    """Two batch sizes in one preset: each comparison is named by its batch size (what the
    terminal table, the parent and the report's sentences show), not by a bare number."""
    from bench.report.numbers.collect import comparison_keys
    from bench.report.numbers.rows import group_names

    runs = pd.DataFrame(
        {
            "tags.preset": ["custom"] * 4,
            "tags.implementation": ["numpy", "jax", "numpy", "jax"],
            "params.seed": ["0"] * 4,
            "params.train.batch_size": ["64", "64", "128", "128"],
        }
    )
    runs = runs.assign(comparison=comparison_keys(runs))
    assert list(group_names(runs)) == [
        "custom (train.batch_size=64)", "custom (train.batch_size=64)",
        "custom (train.batch_size=128)", "custom (train.batch_size=128)",
    ]  # fmt: skip
    same = runs.assign(**{"params.train.batch_size": "64"})
    assert set(group_names(same.assign(comparison=comparison_keys(same)))) == {"custom"}


def test_mcnemar_over_seeds_pools_the_discordant_images_as_one_binomial():
    """Reference: scipy's exact binomial test of 30 of 45 discordant images at 1/2."""
    from scipy.stats import binomtest

    assert analysis.pooled_mcnemar_p([10, 12, 8], [5, 6, 4]) == pytest.approx(
        binomtest(30, 45, 0.5).pvalue
    )
    assert analysis.pooled_mcnemar_p([0], [0]) == 1.0


def test_agreement_over_seeds_counts_every_shared_seed():
    from bench.report.numbers.tables import agreement_over_seeds

    labels = np.array([0, 1, 2, 3])
    by_seed = {
        0: {"numpy": (np.array([0, 1, 2, 0]), labels), "keras": (np.array([0, 1, 0, 3]), labels)},
        1: {"numpy": (np.array([0, 1, 2, 3]), labels), "keras": (np.array([0, 0, 2, 3]), labels)},
        2: {"numpy": (np.array([0, 1, 2, 3]), labels)},  # keras did not run seed 2
    }
    row = agreement_over_seeds(by_seed).iloc[0]
    assert (row.A, row.B, row.seeds) == ("numpy", "keras", 2)
    assert row.agree == pytest.approx((0.5 + 0.75) / 2)
    assert (row["only A right"], row["only B right"]) == (1.0, 0.5)  # (1+1)/2, (1+0)/2
    assert row["McNemar p"] == pytest.approx(analysis.pooled_mcnemar_p([1, 1], [1, 0]))
    assert row["p < 0.05 in"] == "0 of 2 seeds"


def test_the_box_says_why_time_to_target_was_not_tested(compared):
    """Not one line "no run reached the target" where the host was contended instead."""
    from bench.report.pages import front

    busy = compared.assign(  # every run reached the target; all but seed 0 ran on a busy host
        all_contended=lambda d: d.seed != 0, time_to_target_s=lambda d: 3 * d.steady_epoch_s
    )
    lines = front.comparison_lines(verdicts.verdicts(busy), busy)
    said = [line for line in lines if "time to target" in line]
    assert said and all("host contended" in line for line in said), said
    assert not any("no run reached" in line for line in lines)


# --- the report's first screen ------------------------------------------------------------


def test_steady_throughput_leaves_the_first_epoch_out():
    """1,000 images, epochs of 5, 1 and 1 s: the harness's samples/s is 3,000 / 7 s = 429,
    the steady one 1,000 / 1 s; the key table shows the steady one, the first epoch apart."""
    runs = pd.DataFrame(
        {"run_id": ["r0", "r1", "r2"], "run_name": ["n-s0", "n-s1", "n-s2"],
         "status": "FINISHED", "tags.implementation": "numpy", "tags.device": "cpu",
         "tags.preset": "p", "params.seed": ["0", "1", "2"], "comparison": "s",
         "metrics.samples_per_s": [3000 / 7, 3000 / 8, 3000 / 9],
         "metrics.train_time_s": [7.0, 8.0, 9.0], "metrics.test_accuracy": 0.98}
    )  # fmt: skip
    hist = pd.DataFrame(
        history("r0", [None] * 3) + history("r1", [None] * 3) + history("r2", [None] * 3)
    )
    hist.loc[hist.step == 1, "value"] = 5.0
    hist.loc[(hist.run_id == "r1") & (hist.step > 1), "value"] = 1.5  # 1,000 / 1.5 s
    hist.loc[(hist.run_id == "r2") & (hist.step > 1), "value"] = 2.0
    rows = per_run(runs, hist)
    assert rows.steady_samples_per_s.tolist() == pytest.approx([1000.0, 1000 / 1.5, 500.0])
    full = runs.assign(**{"params.dataset.n_train": "null", "params.dataset.val_size": "5000"})
    steady = per_run(full, hist).steady_samples_per_s  # the whole pool less validation
    assert steady.tolist() == pytest.approx([55000.0, 55000 / 1.5, 27500.0])
    assert summary_table(rows.assign(group="p")).steady_samples_per_s_median.iloc[0] == (
        pytest.approx(1000 / 1.5)
    )
    table = front.key_table(rows.assign(group="p"), verdicts.verdicts(rows), "p", [])
    assert table.columns[:4].tolist() == [
        "implementation", "speed", "steady epoch [95% CI]", "test accuracy [95% CI]"
    ]  # fmt: skip
    assert table["steady samples/s (median)"].iloc[0] == "667"
    assert table["first epoch (median)"].iloc[0] == "5.00 s"
    assert "samples/s" not in table


def test_a_one_seed_preset_says_once_that_it_tested_nothing():
    rows = rows_of(
        {"implementation": "keras", "seed": 0, "steady_epoch_s": 4.0},
        {"implementation": "numpy", "seed": 0, "steady_epoch_s": 1.0},
    )
    v = verdicts.verdicts(rows)
    assert len(v) == 3 and (v.verdict == NOT_TESTED).all()  # verdicts.csv keeps its rows
    box = front.box_lines(v, rows, [])
    assert box == [
        "1 seed (seed 0): not tested, one run per implementation gives no interval; the "
        "numbers below are single runs. For verdicts, run 3 or more seeds (seed=0,1,2 or more)"
    ]
    table = front.key_table(rows, v, "p", [])
    assert table.columns.tolist() == [
        "implementation", "test accuracy", "steady epoch", "steady samples/s", "first epoch",
        "time to target",
    ]  # fmt: skip
    assert table.implementation.tolist() == ["numpy", "keras"]
    assert table["steady epoch"].tolist() == ["1.00 s", "4.00 s"]


def preset_runs(**params) -> pd.DataFrame:
    """An MLflow-shaped frame of two runs of preset p with the params a key caption names."""
    base = {"params.model.hidden": "[512]", "params.model.activation": "relu",
            "params.optimizer.name": "rmsprop", "params.optimizer.lr": "0.001",
            "params.train.batch_size": "128", "params.train.epochs": "5",
            "params.model.dtype": "float32", "params.device.name": "cpu"}  # fmt: skip
    runs = pd.DataFrame({"run_id": ["r0", "r1"], "tags.preset": "p",
                         "tags.implementation": ["numpy", "keras"], "params.seed": "0",
                         **base})  # fmt: skip
    for key, values in params.items():
        runs[key] = values
    return runs.assign(comparison=comparison_keys(runs))


def test_the_key_table_caption_names_the_setting_its_rows_share():
    runs = preset_runs()
    rows = rows_of(*({"implementation": i, "seed": 0, "comparison": k}
                     for i, k in zip(runs["tags.implementation"], runs.comparison)))  # fmt: skip
    assert front.key_caption("p", runs, rows, what_differs(runs, runs.comparison)) == (
        "p: key numbers (784-512-10 relu, rmsprop lr=0.001, batch 128, 5 epochs, float32, cpu)"
    )
    two = preset_runs(**{"params.train.batch_size": ["64", "128"], "params.model.hidden": "[]"})
    rows = rows_of(*({"implementation": "numpy", "seed": 0, "comparison": k}
                     for k in two.comparison))  # fmt: skip
    number = dict(zip(rows.comparison, setting_numbers(rows)))
    caption = front.key_caption("p", two, rows, what_differs(two, two.comparison))
    assert caption.startswith("p: key numbers (784-10 relu, rmsprop lr=0.001, 5 epochs, ")
    first, second = sorted(zip(number.values(), ["64", "128"]))
    assert caption.endswith(
        f"; setting {first[0]}: train.batch_size={first[1]}; "
        f"setting {second[0]}: train.batch_size={second[1]})"
    )
    box = front.box_lines(verdicts.verdicts(rows), rows, [], what_differs(two, two.comparison))
    assert f"setting {first[0]}: train.batch_size={first[1]}" in box


def test_mcnemar_and_an_equivalent_accuracy_are_reconciled_in_one_sentence():
    agree = pd.DataFrame([{"A": "tf_tape", "B": "keras", "seeds": 5, "only A right": 40.2,
                           "only B right": 52.6, "McNemar p": 0.0004}])  # fmt: skip
    v = pd.DataFrame([{"quantity": "test_accuracy", "a": "tf_tape", "b": "keras",
                       "verdict": "equivalent", "margin": 0.3954}])  # fmt: skip
    assert assemble.reconciling_lines(agree, v) == [
        "tf_tape and keras differ on which images they get right (McNemar p < 0.001 over 5 "
        "seeds: keras right on 12.4 more images per seed) but by less than the ±0.40 points "
        "the 10,000 test images can resolve, so their accuracies are called equivalent"
    ]
    assert assemble.reconciling_lines(agree.assign(**{"McNemar p": 0.2}), v) == []
    assert assemble.reconciling_lines(agree, v.assign(verdict="less accurate")) == []


def test_a_section_with_nothing_to_show_is_left_out():
    mnist = rows_of(*trio("numpy", [1, 1, 1]))
    assert front.reproduction_section(mnist) is None  # no tutorial preset
    fashion = mnist.assign(preset="keras_dense512", dataset="fashion_mnist")
    judged = front.reproduction_section(fashion)
    assert judged.text == [
        "keras_dense512: not judged, no run on the tutorial's own dataset (mnist)."
    ]
    assert assemble.time_to_accuracy_section(mnist.assign(has_val=False), Path()) is None
    runs = mlflow_runs(**{"tags.implementation": "numpy", "tags.lockstep": "true"})
    one = pd.DataFrame([{"run_id": r, "key": "train_loss", "step": 1, "value": 0.3}
                        for r in runs.run_id])  # fmt: skip
    assert appendix.lockstep_section(runs, one) is None  # lockstep, but one implementation
    assert appendix.determinism_section(runs) is None
    assert appendix.more_numbers(pd.DataFrame()) is None
    assert assemble.empty(Section("x", tables=[Table(pd.DataFrame())]))
    assert not assemble.empty(Section("x", ["a finding"]))
