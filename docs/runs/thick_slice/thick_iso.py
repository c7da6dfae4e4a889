from nnunetv2_lightmedseg.training.variants import nnUNetTrainer_LightMedSeg_IsoBench_4x50


class nnUNetTrainer_LMSThick_IsoB_4x50(nnUNetTrainer_LightMedSeg_IsoBench_4x50):
    pass


class nnUNetTrainer_LMSThick_IsoC_4x50(nnUNetTrainer_LightMedSeg_IsoBench_4x50):
    pass
