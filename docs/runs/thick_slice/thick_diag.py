from nnunetv2_lightmedseg.training.variants import nnUNetTrainer_LightMedSeg_CPUBench_4x50


class nnUNetTrainer_LMSThick_K333_4x50(nnUNetTrainer_LightMedSeg_CPUBench_4x50):
    """plans-aware strides, but 3x3x3 kernels on every level"""
    network_options = {"kernel_sizes": [[3, 3, 3]] * 5}


class nnUNetTrainer_LMSThick_Rep_4x50(nnUNetTrainer_LightMedSeg_CPUBench_4x50):
    """a second sample of the plans-aware run"""


class nnUNetTrainer_LMSThick_Rep3_4x50(nnUNetTrainer_LightMedSeg_CPUBench_4x50):
    """a third sample of the plans-aware run"""


class nnUNetTrainer_LMSThick_K333b_4x50(nnUNetTrainer_LMSThick_K333_4x50):
    pass


class nnUNetTrainer_LMSThick_K333c_4x50(nnUNetTrainer_LMSThick_K333_4x50):
    pass


class nnUNetTrainer_LMSThick_Rep4_4x50(nnUNetTrainer_LightMedSeg_CPUBench_4x50):
    pass


class nnUNetTrainer_LMSThick_Rep5_4x50(nnUNetTrainer_LightMedSeg_CPUBench_4x50):
    pass


class nnUNetTrainer_LMSThick_K333d_4x50(nnUNetTrainer_LMSThick_K333_4x50):
    pass


class nnUNetTrainer_LMSThick_K333e_4x50(nnUNetTrainer_LMSThick_K333_4x50):
    pass
