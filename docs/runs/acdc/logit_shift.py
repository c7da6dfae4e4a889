"""Inference-only check: does shifting the foreground logits by -log(weight ratio) undo the weighted-CE
over-segmentation? Dice in the preprocessed grid, no mirroring, on the grouped fold-0 validation cases."""
import json, sys, numpy as np, torch
from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
from nnunetv2.training.dataloading.nnunet_dataset import nnUNetDatasetBlosc2
from nnunetv2_lightmedseg.checkpoints import safe_torch_load
def main():
    torch.set_num_threads(1)
    model, pre = sys.argv[1], sys.argv[2]
    shifts = [float(s) for s in sys.argv[3].split(',')]
    val = json.load(open(f"{pre}/splits_final.json"))[0]['val']
    p = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=False, device=torch.device('cpu'), verbose=False, verbose_preprocessing=False)
    with safe_torch_load():
        p.initialize_from_trained_model_folder(model, (0,), 'checkpoint_final.pth')
    ds = nnUNetDatasetBlosc2(f"{pre}/nnUNetPlans_3d_fullres", val)
    res = {s: [] for s in shifts}
    for k in val:
        data, seg, _, _ = ds.load_case(k)
        logits = p.predict_logits_from_preprocessed_data(torch.from_numpy(np.asarray(data)).float()).float()
        seg = np.asarray(seg)[0]
        for s in shifts:
            z = logits.clone(); z[1:] -= s
            pred = z.argmax(0).numpy()
            d = []
            for c in range(1, logits.shape[0]):
                a, b = pred == c, seg == c
                d.append(2 * (a & b).sum() / max(1, a.sum() + b.sum()) if (a.sum() + b.sum()) else 1.0)
            res[s].append(d)
        print(k, {s: np.round(res[s][-1], 3).tolist() for s in shifts}, flush=True)
    for s in shifts:
        r = np.array(res[s]); print(f"shift {s}: mean {r.mean():.4f} per class {np.round(r.mean(0), 4).tolist()}")


if __name__ == "__main__":  # nnU-Net imports every module of an nnUNet_extTrainer folder
    main()
