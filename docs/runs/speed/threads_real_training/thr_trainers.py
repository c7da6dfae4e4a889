import os, time
import torch
from nnunetv2_lightmedseg.training.trainer import nnUNetTrainer_LightMedSeg
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

class _Thr:
    def initialize(self):
        super().initialize()
        t = os.environ.get("EXP_THREADS")
        if t:
            torch.set_num_threads(int(t))
        self.print_to_log_file(f"threads {torch.get_num_threads()}")
        self._t = []
    def train_step(self, batch):
        t0 = time.perf_counter()
        out = super().train_step(batch)
        self._t.append(time.perf_counter() - t0)
        return out
    def on_train_epoch_end(self, outs):
        import numpy as np
        a = np.array(self._t); self._t = []
        self.print_to_log_file(f"STEP median {np.median(a):.3f} mean {a.mean():.3f} n {len(a)}")
        super().on_train_epoch_end(outs)

class nnUNetTrainer_LMSThr(_Thr, nnUNetTrainer_LightMedSeg):
    training_options = {"num_epochs": 3, "num_iterations_per_epoch": 60, "num_val_iterations_per_epoch": 5}

class nnUNetTrainer_StockThr(_Thr, nnUNetTrainer):
    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.num_epochs = 2; self.num_iterations_per_epoch = 15; self.num_val_iterations_per_epoch = 3
