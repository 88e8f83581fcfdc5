"""The one place the Adversarial Robustness Toolbox is imported, without its import-time chatter.

ART warns at import that PyTorch is absent (its certification package) and, through its own ``tqdm.auto``, that
ipywidgets is (inside a Jupyter kernel). Neither is about this project, so both are filtered here, once, and
every module that uses ART (attacks, defences, detector, peers) imports it from here.
"""
import warnings

from tqdm import TqdmWarning

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="PyTorch not found")
    warnings.filterwarnings("ignore", message="IProgress not found", category=TqdmWarning)
    import art
    from art.attacks.evasion import BasicIterativeMethod, FastGradientMethod, ProjectedGradientDescent
    from art.attacks.evasion.projected_gradient_descent.projected_gradient_descent_tensorflow_v2 import (
        ProjectedGradientDescentTensorFlowV2,
    )
    from art.defences import preprocessor
    from art.defences.detector.evasion import EvasionDetector, SubsetScanningDetector
    from art.estimators.classification import TensorFlowV2Classifier

__all__ = ["art", "BasicIterativeMethod", "FastGradientMethod", "ProjectedGradientDescent",
           "ProjectedGradientDescentTensorFlowV2", "preprocessor", "EvasionDetector", "SubsetScanningDetector",
           "TensorFlowV2Classifier"]
