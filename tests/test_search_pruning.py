"""The search's median pruner compares trials at the same share of their own schedules, not at the same epoch."""

from types import SimpleNamespace

import optuna
import pytest
from optuna.trial import TrialState, create_trial

from finetune.search_pruning import ReportToTrial, make_pruner, schedule_step

optuna.logging.set_verbosity(optuna.logging.WARNING)


def study_with(completed: list[dict[int, float]], direction: str = "minimize") -> optuna.Study:
    study = optuna.create_study(direction=direction, pruner=make_pruner("median"))
    sign = 1 if direction == "minimize" else -1
    for values in completed:
        final = min(values.values(), key=lambda value: sign * value)
        study.add_trial(create_trial(state=TrialState.COMPLETE, value=final, intermediate_values=values))
    return study


def should_prune(study: optuna.Study, reports: dict[int, float]) -> bool:
    trial = study.ask()
    for step, value in reports.items():
        trial.report(value, step)
    return trial.should_prune()


# Three completed 3-epoch trials (evaluated at a third, two thirds, the end) and one 6-epoch trial.
SHORT = [{333: 0.40, 667: 0.35, 1000: 0.33}, {333: 0.42, 667: 0.36, 1000: 0.34}, {333: 0.44, 667: 0.37, 1000: 0.35}]
LONG = {167: 0.50, 333: 0.41, 500: 0.36, 667: 0.34, 833: 0.33, 1000: 0.32}


def test_a_long_schedule_is_compared_at_the_same_share_of_training_not_the_same_epoch():
    study = study_with(SHORT)
    # Epoch 1 of 6: behind every short trial's epoch 1, but only a sixth of its schedule is done: not compared yet.
    assert not should_prune(study, {167: 0.50})
    # Epoch 2 of 6, a third of the schedule: level with the short trials at a third (median 0.42), so it goes on.
    assert not should_prune(study, {167: 0.50, 333: 0.41})
    # Behind the median at a third of the schedule: stopped.
    assert should_prune(study, {167: 0.50, 333: 0.43})


def test_completed_trials_count_by_their_best_value_up_to_that_share():
    # At half of the schedule the 3-epoch trials' latest values are those at a third; the 6-epoch trial's at half.
    study = study_with([*SHORT, LONG])
    # Median of (0.40, 0.42, 0.44, 0.36) is 0.41.
    assert not should_prune(study, {250: 0.60, 500: 0.405})
    assert should_prune(study, {250: 0.60, 500: 0.415})
    # A trial's own best so far counts, not its last value.
    assert not should_prune(study, {250: 0.39, 500: 0.45})


def test_nothing_is_stopped_before_three_trials_completed_or_before_a_quarter_of_the_schedule():
    assert not should_prune(study_with(SHORT[:2]), {333: 0.90})
    # The 6-epoch trial's value at a sixth (0.50) is the only one that early.
    assert not should_prune(study_with([*SHORT, LONG]), {200: 0.90})
    assert should_prune(study_with([*SHORT, LONG]), {250: 0.90})


def test_completed_trials_without_an_evaluation_that_early_do_not_count():
    # Two trials first evaluated at the end: at a third only SHORT[0] (0.40) and SHORT[1] (0.42) compare.
    study = study_with([SHORT[0], SHORT[1], {1000: 0.10}, {1000: 0.10}])
    assert not should_prune(study, {333: 0.41})
    assert should_prune(study, {333: 0.415})


def test_a_metric_where_higher_is_better():
    study = study_with([{500: 0.80, 1000: 0.85}, {500: 0.82, 1000: 0.86}, {500: 0.84, 1000: 0.88}], "maximize")
    assert not should_prune(study, {500: 0.83})
    assert should_prune(study, {500: 0.81})


def test_a_nan_value_is_stopped_once_the_pruner_compares():
    assert should_prune(study_with(SHORT), {333: float("nan")})


@pytest.mark.parametrize(
    "global_step, max_steps, step", [(100, 300, 333), (200, 300, 667), (300, 300, 1000), (1, 6, 167), (5, 0, 5000)]
)
def test_steps_are_thousandths_of_the_schedule(global_step, max_steps, step):
    assert schedule_step(global_step, max_steps) == step


def test_the_callback_reports_shares_and_stops_a_trial_behind_but_not_one_at_its_end():
    study = study_with(SHORT)
    trial = study.ask()
    callback = ReportToTrial(trial, "eval_loss")

    def evaluate(global_step: int, loss: float) -> None:
        state = SimpleNamespace(global_step=global_step, max_steps=600)
        callback.on_evaluate(None, state, None, metrics={"eval_loss": loss})

    evaluate(100, 0.90)  # a sixth: too early to compare
    with pytest.raises(optuna.TrialPruned, match="at 33.3% of training"):
        evaluate(200, 0.90)
    assert study.trials[-1].intermediate_values == {167: 0.90, 333: 0.90}

    late = study.ask()
    callback = ReportToTrial(late, "eval_loss")
    evaluate(100, 0.90)
    evaluate(600, 0.90)  # the end of the schedule: behind, but its run is done
    evaluate(600, 0.50)  # the best model evaluated again after training: no new report
    assert study.trials[-1].intermediate_values == {167: 0.90, 1000: 0.90}


def test_optunas_log_keeps_one_line_per_failed_trial_and_none_for_ctrl_c():
    import logging

    from finetune.search_pruning import without_traceback

    def record(message: str, error: BaseException | None = None) -> logging.LogRecord:
        exc_info = (type(error), error, None) if error else None
        return logging.LogRecord("optuna.study._optimize", logging.WARNING, __file__, 1, message, (), exc_info)

    failed = record("Trial 2 failed with parameters: {} because of the following error: ValueError()", ValueError())
    assert without_traceback(failed) and failed.exc_info is None  # the command reports the error itself
    assert not without_traceback(record("Trial 2 failed because of KeyboardInterrupt()", KeyboardInterrupt()))
    assert not without_traceback(record("Trial 2 failed with value None."))  # follows every exception
    assert without_traceback(record("Trial 3 failed with value nan."))  # a value Optuna refuses: kept
