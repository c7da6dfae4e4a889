"""The training's CPU thread count chosen from timed steps (:mod:`nnunetv2_lightmedseg.cpu.threads`):
the choice, when it is made again, and its switch (the trainer that uses it: tests/test_trainer.py)."""
from __future__ import annotations

import pytest
import torch

from nnunetv2_lightmedseg.cpu.threads import ENV_SWITCH, ThreadTuner, candidate_counts, thread_setting


@pytest.fixture(autouse=True)
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def drive(tuner: ThreadTuner, seconds_at, steps: int) -> list:
    """Run ``steps`` steps; ``seconds_at(threads, step)`` is what a step at that count takes. Returns the
    thread count torch had during each step."""
    seen = []
    for i in range(steps):
        n = tuner.before_step()
        assert torch.get_num_threads() == n
        seen.append(n)
        tuner.after_step(seconds_at(n, i))
    return seen


def test_thread_setting_values_and_errors(monkeypatch):
    monkeypatch.delenv(ENV_SWITCH, raising=False)
    assert thread_setting() is None
    assert thread_setting("auto") is None and thread_setting(" AUTO ") is None
    assert thread_setting("3") == 3
    monkeypatch.setenv(ENV_SWITCH, "1")
    assert thread_setting() == 1
    for bad in ("0", "-2", "two", "1.5"):
        with pytest.raises(ValueError, match=f"{ENV_SWITCH} must be 'auto' .* or a positive integer"):
            thread_setting(bad)


def test_candidate_counts():
    assert candidate_counts(1) == [1]
    assert candidate_counts(2) == [2, 1]
    assert candidate_counts(3) == [3, 1]
    assert candidate_counts(16) == [16, 8, 4, 1]
    with pytest.raises(ValueError, match="max_threads must be >= 1"):
        candidate_counts(0)


def test_invalid_arguments():
    with pytest.raises(ValueError, match="rounds, window and recheck_every"):
        ThreadTuner(2, rounds=0)
    with pytest.raises(ValueError, match=r"tolerance must be in \(0, 1\)"):
        ThreadTuner(2, tolerance=1.5)


def test_one_core_has_nothing_to_choose():
    tuner = ThreadTuner(1)
    assert not tuner.probing
    assert drive(tuner, lambda n, i: 0.1, 20) == [1] * 20
    assert tuner.history == []


@pytest.mark.parametrize("times, expected", [({2: 1.0, 1: 0.5}, 1),   # shared cores: one thread wins
                                             ({2: 0.3, 1: 0.5}, 2)])  # idle cores: all threads win
def test_first_choice_is_the_faster_count(times, expected):
    lines = []
    tuner = ThreadTuner(2, rounds=3, log=lines.append)
    assert tuner.probing
    seen = drive(tuner, lambda n, i: times[n], 8)
    # interleaved: a first (unscored) step at each count, then three rounds of 2, 1
    assert seen == [2, 1, 2, 1, 2, 1, 2, 1]
    assert not tuner.probing and tuner.threads == expected
    assert tuner.history[0]["reason"] == "first choice" and tuner.history[0]["mean_s"] == times
    assert f"training on {expected} CPU thread" in lines[0] and "2 threads" in lines[0] and "1 thread " in lines[0]
    assert drive(tuner, lambda n, i: times[n], 5) == [expected] * 5


def test_first_step_at_a_new_count_is_not_scored():
    # oneDNN builds its kernels at the first step of each thread count: a very slow step that must not decide
    first = set()

    def seconds(n, i):
        if n not in first:
            first.add(n)
            return 100.0 if n == 1 else 0.3
        return {2: 1.0, 1: 0.5}[n]
    tuner = ThreadTuner(2, rounds=2)
    drive(tuner, seconds, 6)
    assert tuner.threads == 1 and tuner.history[0]["mean_s"] == {2: 1.0, 1: 0.5}


def test_mean_not_median_decides():
    # at 2 threads two of three steps are fast and one is very slow (the shared-core slow mode): the mean is
    # what the training pays, the median would hide it
    slow = iter([0.3, 6.0, 0.3])
    tuner = ThreadTuner(2, rounds=3)
    drive(tuner, lambda n, i: (0.3 if i == 0 else next(slow)) if n == 2 else 0.5, 8)
    assert tuner.threads == 1


def test_load_coming_and_going_is_followed():
    idle, loaded = {2: 0.3, 1: 0.5}, {2: 1.2, 1: 0.8}
    state = {"times": idle}
    tuner = ThreadTuner(2, rounds=2, window=4, tolerance=0.3, recheck_every=10_000)
    drive(tuner, lambda n, i: state["times"][n], 6 + 8)
    assert tuner.threads == 2 and len(tuner.history) == 1
    state["times"] = loaded  # another job starts
    drive(tuner, lambda n, i: state["times"][n], 4 + 4)  # one window to see it, then two rounds of tries
    assert tuner.threads == 1 and len(tuner.history) == 2
    assert tuner.history[1]["reason"] == "step time moved from 0.300 to 1.200 s"
    drive(tuner, lambda n, i: state["times"][n], 8)
    assert len(tuner.history) == 2  # steady: no new tries
    state["times"] = idle  # the other job ends: one thread gets faster, and all threads are tried again
    drive(tuner, lambda n, i: state["times"][n], 4 + 4)
    assert tuner.threads == 2 and tuner.history[2]["reason"] == "step time moved from 0.800 to 0.500 s"


def test_small_changes_do_not_trigger_and_checks_recur():
    tuner = ThreadTuner(2, rounds=1, window=4, tolerance=0.3, recheck_every=20)
    wobble = [0.30, 0.33, 0.28, 0.36]  # within 30 % of the first window's mean
    drive(tuner, lambda n, i: wobble[i % 4] if n == 2 else 0.5, 4 + 19)
    assert len(tuner.history) == 1 and not tuner.probing
    drive(tuner, lambda n, i: wobble[i % 4] if n == 2 else 0.5, 1)  # the 20th step since the choice
    assert tuner.probing
    drive(tuner, lambda n, i: 0.3 if n == 2 else 0.5, 2)
    assert tuner.history[1]["reason"] == "20 steps since the last check" and tuner.threads == 2



# ------------------------------------------------------------------------------------ inference forwards
def _inference(module, n, shape=(1, 1, 8, 8, 8)):
    with torch.no_grad():
        for _ in range(n):
            module(torch.randn(shape))


def test_inference_forwards_are_tuned_and_others_left_alone(monkeypatch):
    from nnunetv2_lightmedseg.cpu.threads import attach_inference_threads, detach_inference_threads
    monkeypatch.delenv(ENV_SWITCH, raising=False)
    module = torch.nn.Conv3d(1, 2, 3).eval()
    hooks = attach_inference_threads(module, rounds=2)
    assert attach_inference_threads(module) is hooks  # once per module
    torch.set_num_threads(2)  # what nnU-Net's predictor sets at the start of a case
    _inference(module, 6)  # a first forward at each count, then two rounds
    assert hooks.tuner.candidates == [2, 1] and len(hooks.tuner.history) == 1 and hooks.tuner._steps == 6
    module.train()
    module(torch.randn(1, 1, 8, 8, 8))  # a training forward: not timed
    module.eval()
    torch.jit.trace(module, torch.randn(1, 1, 8, 8, 8), check_trace=False)  # traced for export: not timed
    with torch.no_grad():
        torch.jit.trace(module, torch.randn(1, 1, 8, 8, 8), check_trace=False)
    assert hooks.tuner._steps == 6
    _inference(module, 1)
    assert hooks.tuner._steps == 7 and torch.get_num_threads() == hooks.tuner.threads
    detach_inference_threads(module)
    assert not module._forward_hooks and not module._forward_pre_hooks
    assert not hasattr(module, "_lightmedseg_inference_threads")
    detach_inference_threads(module)  # nothing attached: nothing to do


def test_inference_threads_fixed_by_the_switch(monkeypatch):
    from nnunetv2_lightmedseg.cpu.threads import attach_inference_threads
    monkeypatch.setenv(ENV_SWITCH, "1")
    module = torch.nn.Conv3d(1, 2, 3).eval()
    hooks = attach_inference_threads(module)
    torch.set_num_threads(2)
    _inference(module, 3)
    assert torch.get_num_threads() == 1 and hooks.tuner is None and hooks.fixed == 1


def test_inference_threads_report(monkeypatch):
    from nnunetv2_lightmedseg.cpu.threads import attach_inference_threads, inference_threads_report
    monkeypatch.delenv(ENV_SWITCH, raising=False)
    module = torch.nn.Conv3d(1, 2, 3).eval()
    assert inference_threads_report(module) == "the caller's thread count (nnU-Net's)"
    attach_inference_threads(module, rounds=1)
    assert inference_threads_report(module) == "chosen from timed forwards (none run yet)"
    torch.set_num_threads(2)
    _inference(module, 1)
    assert inference_threads_report(module) == "chosen from timed forwards (no choice made yet)"
    _inference(module, 3)
    chosen = module._lightmedseg_inference_threads.tuner.threads
    assert inference_threads_report(module) == f"chosen from timed forwards: {chosen} (choices: {chosen} at forward 4)"


def test_checks_that_keep_the_choice_watch_longer_means():
    # at 2 threads the load alternates every 4 steps (0.3 s, then 0.5 s); 1 thread is always slower. With a
    # 4-step window every other mean "moves" by 67 %; after a check that keeps 2 threads the tuner watches
    # 8-step means, which do not move, instead of trying 1 thread again every 8 steps
    tuner = ThreadTuner(2, rounds=1, window=4, tolerance=0.3, recheck_every=10_000)
    steady = {"steps": 0}

    def seconds(n, i):
        if tuner.probing:
            return 1.0 if n == 1 else 0.4
        steady["steps"] += 1
        return 0.3 if ((steady["steps"] - 1) // 4) % 2 == 0 else 0.5
    drive(tuner, seconds, 200)
    assert [h["threads"] for h in tuner.history] == [2, 2]  # the first choice and one check, not ~20
    assert tuner.history[1]["reason"] == "step time moved from 0.300 to 0.500 s" and tuner._watch == 8
