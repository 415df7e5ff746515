"""How networks run on this machine: thread counts (``threads``) and the ONNX Runtime path (``onnx``)."""
