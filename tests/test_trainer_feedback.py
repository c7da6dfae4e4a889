"""Feedback of the LightMedSeg trainers: a progress bar inside each training and validation epoch on a terminal
(none in logs and pipes), and Ctrl-C ending nnUNetv2_train with one line saying what was kept and how to resume."""
import json
import os
import sys
from pathlib import Path

import pytest
import torch

from helpers import TINY_NAME, tiny_preprocessed_dataset
from nnunetv2_lightmedseg.training import nnUNetTrainer_LightMedSeg_Smoke
from nnunetv2_lightmedseg.utils.nnunet_env import trainers_folder


@pytest.fixture
def trainer(monkeypatch, tmp_path):
    base = tiny_preprocessed_dataset()
    pre = base / "preprocessed" / TINY_NAME
    for k, v in (("nnUNet_raw", base / "raw"), ("nnUNet_preprocessed", base / "preprocessed"),
                 ("nnUNet_results", tmp_path / "results"), ("nnUNet_extTrainer", trainers_folder()),
                 ("nnUNet_n_proc_DA", "0")):
        monkeypatch.setenv(k, str(v))
    plans = json.loads((pre / "nnUNetPlans.json").read_text())
    return nnUNetTrainer_LightMedSeg_Smoke(dict(plans, continue_training=False), "3d_fullres", 0,
                                           json.loads((pre / "dataset.json").read_text()), device=torch.device("cpu"))


def run_one_epoch(t):
    t.on_train_epoch_start()
    outs = [t.train_step(next(t.dataloader_train)) for _ in range(3)]
    t.on_train_epoch_end(outs)
    with torch.no_grad():
        t.on_validation_epoch_start()
        vals = [t.validation_step(next(t.dataloader_val)) for _ in range(2)]
        t.on_validation_epoch_end(vals)


def test_progress_bar_on_a_terminal_only(trainer, monkeypatch, capsys):
    t = trainer
    t.initialize()
    t.dataloader_train, t.dataloader_val = t.get_dataloaders()
    Path(t.output_folder).mkdir(parents=True, exist_ok=True)
    assert not t.show_progress()  # pytest captures: not a terminal
    run_one_epoch(t)
    assert "it/s" not in capsys.readouterr().err
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True, raising=False)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    assert t.show_progress()
    t.current_epoch = 1
    run_one_epoch(t)
    err = capsys.readouterr().err
    # tqdm redraws at most every 0.1 s, so which counts appear depends on speed; the bars and their totals do not
    assert f"epoch 1 training: 0/{t.num_iterations_per_epoch}" in err and "epoch 1 validation: 0/2" in err
    assert "left" in err and ("it/s" in err or "s/it" in err) and "loss " in err
    assert t._progress is None  # closed at the end of each phase


def test_ctrl_c_in_training_prints_one_line_with_the_resume_command(trainer, monkeypatch, capsys):
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    t = trainer

    def interrupted(self):
        os.makedirs(self.output_folder, exist_ok=True)
        torch.save({}, os.path.join(self.output_folder, "checkpoint_best.pth"))
        self.current_epoch = 1
        raise KeyboardInterrupt

    monkeypatch.setattr(nnUNetTrainer, "run_training", interrupted)
    with pytest.raises(SystemExit) as e:
        t.run_training()
    assert e.value.code == 130
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1
    assert "training interrupted in epoch 1; kept checkpoint_best.pth" in err[0]
    assert (f"resume with: nnUNetv2_train {TINY_NAME} 3d_fullres 0 -tr nnUNetTrainer_LightMedSeg_Smoke -device cpu "
            f"--c") in err[0]
