"""Tools for a trained model, each loading it as ``nnUNetv2_predict`` does (:mod:`.loading`):

* :mod:`.export`  -- ONNX / TorchScript with dynamic sizes, inference metadata, parity check (``lightmedseg export``)
* :mod:`.explain` -- PNGs of LightMedSeg's internals for one case (``lightmedseg explain``)
"""
