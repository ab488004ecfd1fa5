"""Deployment: ONNX / TorchScript export of the test-time feature path, with a parity check."""
from uda_reid.export.feature_model import RetrievalFeatures, check_exportable
from uda_reid.export.formats import (FORMATS, OnnxRuntimeFeatures, export_onnx,
                                     export_torchscript, load_torchscript)
from uda_reid.export.pipeline import check_parity, export_model, format_parity, parity_failures

__all__ = ["FORMATS", "OnnxRuntimeFeatures", "RetrievalFeatures", "check_exportable",
           "check_parity", "export_model", "export_onnx", "export_torchscript", "format_parity",
           "load_torchscript", "parity_failures"]
