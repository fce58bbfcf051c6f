"""Putting a trained model to work: `fgvc predict` over photos with their own place and date, `fgvc serve`
(HTTP API and page), ONNX export."""
