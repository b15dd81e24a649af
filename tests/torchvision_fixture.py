"""Writes a torchvision ResNet as PyTorch exports it to ONNX, for tests/test_onnx.cpp.

Usage: /usr/bin/python3 torchvision_fixture.py OUT_DIR ARCH CLASSES SIZE [IMAGE.png ...]
Writes OUT_DIR/{kept,folded}.onnx (batch norm kept as nodes / folded into the convolutions),
OUT_DIR/input.bin (float32, 3 x 3 x SIZE x SIZE) and OUT_DIR/logits.bin (float32, PyTorch's
eval-mode logits for that input, 3 x CLASSES); with images (SIZE x SIZE), OUT_DIR/probs.bin:
their softmax probabilities (float32, images x CLASSES) after torchvision's ImageNet
preprocessing (RGB, ToTensor, Normalize with ImageNet's mean and std). Weights are random (seed 0), with batch-norm
statistics moved away from their initial values so that the test sees them used.
"""
import sys

import torch
import torchvision

out, arch, classes, size = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
images = sys.argv[5:]
torch.manual_seed(0)
model = getattr(torchvision.models, arch)(num_classes=classes)
with torch.no_grad():
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_(0.0, 0.2)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.uniform_(0.5, 1.5)
            m.bias.normal_(0.0, 0.2)
model.eval()
x = torch.randn(3, 3, size, size)
with torch.no_grad():
    logits = model(x)
x.numpy().astype("float32").tofile(f"{out}/input.bin")
logits.numpy().astype("float32").tofile(f"{out}/logits.bin")
common = dict(opset_version=13, input_names=["input"], output_names=["logits"],
              dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}})
torch.onnx.export(model, x, f"{out}/folded.onnx", **common)
torch.onnx.export(model, x, f"{out}/kept.onnx", training=torch.onnx.TrainingMode.PRESERVE,
                  do_constant_folding=False, **common)

if images:
    from PIL import Image
    from torchvision import transforms

    prep = transforms.Compose([transforms.ToTensor(),
                               transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    batch = torch.stack([prep(Image.open(path).convert("RGB")) for path in images])
    with torch.no_grad():
        torch.softmax(model(batch), dim=1).numpy().astype("float32").tofile(f"{out}/probs.bin")
