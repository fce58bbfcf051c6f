"""Putting a trained model to work: `fgvc predict`, ONNX export."""
