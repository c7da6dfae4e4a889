"""The ``lightmedseg`` command line: help texts match the code, nnU-Net's option spellings, --version, Ctrl-C,
and the demo's keep/clean/overwrite behaviour (nnU-Net's commands replaced by a stand-in that writes what they
would, so these tests take seconds)."""
from __future__ import annotations

import argparse
import json
import re
import subprocess
from pathlib import Path

import pytest

from helpers import BIN, REPO
from nnunetv2_lightmedseg.cli import demo
from nnunetv2_lightmedseg.cli.main import SUBCOMMANDS, build_parser, main


def all_parsers():
    """(name, parser) for `lightmedseg` and every subcommand and sub-subcommand."""
    out, todo = [], [("lightmedseg", build_parser())]
    while todo:
        name, p = todo.pop()
        out.append((name, p))
        for a in p._actions:
            if isinstance(a, argparse._SubParsersAction):
                todo += [(f"{name} {n}", sp) for n, sp in a.choices.items()]
    return out


def test_every_subcommand_is_registered_and_renders_its_help():
    names = {n for n, _ in all_parsers()}
    assert {f"lightmedseg {c}" for c in SUBCOMMANDS} <= names
    assert {"lightmedseg benchmark network", "lightmedseg benchmark results"} <= names
    for name, p in all_parsers():
        text = p.format_help()
        assert "``" not in text and ":mod:" not in text and ":class:" not in text and ":func:" not in text, name
        assert not re.search(r"\(issue \d+\)", text), name
        for a in p._actions:
            if a.help is None and a.option_strings and a.dest not in ("help",):
                pytest.fail(f"{name} {a.option_strings[0]}: no help text")


def test_defaults_quoted_in_help_are_the_real_defaults():
    checked = 0
    for name, p in all_parsers():
        formatter = p._get_formatter()
        for a in p._actions:
            if not a.help or a.help == argparse.SUPPRESS or "default" not in a.help or a.default in (None, False):
                continue
            rendered = formatter._expand_help(a)
            value = " ".join(map(str, a.default)) if isinstance(a.default, (list, tuple)) else str(a.default)
            if isinstance(a.default, float):
                value = f"{a.default:g}"
            assert value in rendered, f"{name} {a.option_strings}: help says {rendered!r}, default is {a.default!r}"
            checked += 1
    assert checked > 30


def test_demo_help_quotes_the_demo_trainer_and_the_measured_duration():
    from nnunetv2_lightmedseg.training import nnUNetTrainer_LightMedSeg_Demo

    opts = nnUNetTrainer_LightMedSeg_Demo.training_options
    p = dict(all_parsers())["lightmedseg demo"]
    text = " ".join(p.format_help().split())
    assert f"{opts['num_epochs']} epochs x {opts['num_iterations_per_epoch']} iterations" in text
    assert f"{demo.MEASURED_DEMO_SECONDS} s end to end" in text
    top = " ".join(build_parser().format_help().split())
    assert f"about {demo.MEASURED_DEMO_SECONDS} s on 2 idle cores" in top
    # README quotes the constant, and the constant is the latest measurement published in docs/results.md
    assert f"~{demo.MEASURED_DEMO_SECONDS} s on 2 idle cores" in (REPO / "README.md").read_text()
    measured = re.search(r"`bash run_demo.sh`.*?: ([0-9.]+) s end to end on the 2 idle", (REPO / "docs" / "results.md")
                         .read_text(), re.S)
    assert measured and round(float(measured.group(1))) == demo.MEASURED_DEMO_SECONDS


def test_export_help_opset_is_the_code_default():
    from nnunetv2_lightmedseg.deploy.export import DEFAULT_OPSET

    text = " ".join(dict(all_parsers())["lightmedseg export"].format_help().split())
    assert f"ONNX opset (default {DEFAULT_OPSET})" in text


SPELLINGS = {"-chk": ("--checkpoint", "checkpoint", "checkpoint_best.pth"), "-device": ("--device", "device", "cuda"),
             "--disable_tta": ("--disable-tta", "disable_tta", True)}


@pytest.mark.parametrize("command,options", [(["export"], ["-chk"]), (["explain", "-o", "x"], ["-chk"]),
                                             (["benchmark", "results"], ["-chk", "-device", "--disable_tta"]),
                                             (["demo"], ["-device", "--disable_tta"])])
def test_nnunet_spellings_and_old_aliases(command, options):
    p = build_parser()
    for new in options:
        old, dest, value = SPELLINGS[new]
        extra = [] if value is True else [value]
        assert getattr(p.parse_args(command + [new, *extra]), dest) == value
        assert getattr(p.parse_args(command + [old, *extra]), dest) == value
        name = "lightmedseg " + " ".join(c for c in command if c not in ("-o", "x"))
        assert new in dict(all_parsers())[name].format_help()


def test_shape_is_spatial_everywhere(capsys):
    p = build_parser()
    assert p.parse_args(["profile", "--shape", "32", "40", "48"]).shape == [32, 40, 48]
    args = p.parse_args(["benchmark", "network", "--in-channels", "2", "--shape", "32", "40", "48"])
    assert (args.in_channels, args.shape) == (2, [32, 40, 48])
    assert p.parse_args(["export", "--benchmark", "--shape", "32", "40", "48"]).shape == [32, 40, 48]
    with pytest.raises(SystemExit):  # the old C X Y Z form is refused
        p.parse_args(["benchmark", "network", "--shape", "1", "32", "32", "32"])


def test_version():
    from nnunetv2_lightmedseg import __version__

    p = subprocess.run([str(BIN / "lightmedseg"), "--version"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and p.stdout.strip() == f"nnunetv2-lightmedseg {__version__}"
    assert "__version__" in (REPO / "setup.py").read_text()  # setup.py reads it, no second copy
    assert not re.search(r'version="\d', (REPO / "setup.py").read_text())


def test_benchmark_results_reports_the_bootstrap_settings_used():
    from nnunetv2_lightmedseg.benchmark.results import compare_summaries, format_results
    from nnunetv2_lightmedseg.utils.summary import FG

    def summary(offset):
        cases = {f"c{i}": {"1": offset + i / 10, FG: offset + i / 10} for i in range(4)}
        return {"labels": ["1"], "mean": {"1": offset + 0.15}, "foreground_mean": offset + 0.15, "cases": cases}

    cmp = compare_summaries({"fold_0": summary(0.1)}, {"fold_0": summary(0.2)}, 500, 3)
    text = format_results(cmp, "A", "B")
    assert "500 resamples, seed 3" in text and "10k" not in text


# -------------------------------------------------------------------------------------------------- Ctrl-C
def test_ctrl_c_ends_a_command_with_one_line(monkeypatch, capsys):
    from nnunetv2_lightmedseg.cli import env

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(env, "run", interrupted)
    assert main(["env"]) == 130
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("lightmedseg env: interrupted (Ctrl-C)")


# ---------------------------------------------------------------------------------------------- demo
def fake_nnunet(interrupt_at=None):
    """Stand-in for demo.run_step: writes what the nnU-Net command would (model folder, predictions, summary)."""
    def run_step(cmd, env, log_file, verbose=False, echo=True, cpu_seconds=None, name=None):
        log_file.parent.mkdir(parents=True, exist_ok=True)
        log_file.write_text("fake\n")
        if name == interrupt_at:
            raise KeyboardInterrupt
        if name == "train":
            d, t = cmd[cmd.index("-tr") - 3], cmd[cmd.index("-tr") + 1]
            ds = next(Path(env["nnUNet_raw"]).iterdir()).name
            fold = Path(env["nnUNet_results"]) / ds / f"{t}__nnUNetPlans__3d_fullres" / "fold_0"
            fold.mkdir(parents=True)
            (fold / "checkpoint_final.pth").write_text("weights")
        if name == "predict":
            Path(cmd[cmd.index("-o") + 1]).mkdir(parents=True)
        if name == "evaluate":
            Path(cmd[cmd.index("-o") + 1]).write_text(json.dumps(
                {"mean": {"1": {"Dice": 0.5}, "2": {"Dice": 0.7}}, "foreground_mean": {"Dice": 0.6},
                 "metric_per_case": [{"reference_file": f"/ref/c{i}.nii.gz", "prediction_file": f"/pred/c{i}.nii.gz",
                                      "metrics": {}} for i in range(2)]}))
        return 0.0
    return run_step


def run_fake_demo(monkeypatch, workdir, *extra, interrupt_at=None):
    monkeypatch.setattr(demo, "run_step", fake_nnunet(interrupt_at))
    return main(["demo", "--workdir", str(workdir), "--num-train", "5", "--num-test", "1", *extra])


def test_demo_keeps_what_it_trained_and_says_where(tmp_path, monkeypatch, capsys):
    work = tmp_path / "demo"
    assert run_fake_demo(monkeypatch, work) == 0
    out = capsys.readouterr().out
    model = next(work.glob("nnUNet_results/*/*/fold_0/checkpoint_final.pth"))
    assert model.read_text() == "weights" and (work / "demo_summary.json").is_file()
    assert f"Kept everything in {work}" in out and str(model.parent.parent) in out
    # a second run does not replace the first one without --overwrite
    assert run_fake_demo(monkeypatch, work) == 2
    assert "holds a previous `lightmedseg demo` run" in capsys.readouterr().err and model.is_file()
    assert run_fake_demo(monkeypatch, work, "--overwrite") == 0


@pytest.mark.parametrize("registered", [False, True])
def test_demo_prints_a_predict_line_for_a_new_shell(tmp_path, monkeypatch, capsys, registered):
    """The printed nnUNetv2_predict line carries every nnUNet_* variable it needs (the trainer folder unless the
    trainers are registered); its paths are the kept run's (the line itself runs in tests/test_end_to_end.py)."""
    import shlex

    monkeypatch.delenv("nnUNet_extTrainer", raising=False)
    monkeypatch.setattr(demo, "registered", lambda: registered)
    work = tmp_path / "demo"
    assert run_fake_demo(monkeypatch, work) == 0
    lines = capsys.readouterr().out.splitlines()
    words = shlex.split(lines[next(i for i, t in enumerate(lines) if t.startswith("Use the model")) + 1])
    env = dict(w.split("=", 1) for w in words[:words.index("nnUNetv2_predict")])
    folders = {"nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"}
    assert set(env) == folders | (set() if registered else {"nnUNet_extTrainer"})
    assert all(Path(env[k]) == work.resolve() / k for k in folders)
    args = words[words.index("nnUNetv2_predict") + 1:]
    assert Path(args[args.index("-i") + 1]).is_dir() and args[args.index("-tr") + 1] == demo.DEFAULT_TRAINER
    assert ("lightmedseg install-trainers" in "\n".join(lines)) is not registered


def test_demo_clean_removes_only_what_it_created(tmp_path, monkeypatch, capsys):
    created = tmp_path / "new"
    assert run_fake_demo(monkeypatch, created, "--clean") == 0
    assert not created.exists()
    mine = tmp_path / "existing_empty"  # a folder the user made: emptied of what the demo wrote, itself kept
    mine.mkdir()
    assert run_fake_demo(monkeypatch, mine, "--clean") == 0
    assert mine.is_dir() and not any(mine.iterdir())
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    assert run_fake_demo(monkeypatch, foreign, "--clean") == 2 and (foreign / "notes.txt").read_text() == "mine"
    capsys.readouterr()


def test_demo_ctrl_c_says_what_was_kept_and_how_to_resume(tmp_path, monkeypatch, capsys):
    work = tmp_path / "demo"
    assert run_fake_demo(monkeypatch, work, interrupt_at="train") == 130
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1, err
    assert "interrupted during 'train'" in err[0] and f"kept {work}" in err[0]
    assert "nnUNetv2_train 990 3d_fullres 0 -tr nnUNetTrainer_LightMedSeg_Demo -device cpu --c" in err[0]
    assert "nnUNet_results=" in err[0] and (work / "nnUNet_preprocessed").parent.is_dir()
