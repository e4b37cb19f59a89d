"""Training and export of the learned encoders (PyTorch -> ONNX -> TensorRT).

Importing this package needs no optional extra; modules that need torch import it inside functions.
"""
