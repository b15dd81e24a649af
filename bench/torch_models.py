"""torch.nn networks built from augflow's compact model spec, for the PyTorch peers.

Whatever model augflow trains (a preset or a spec such as
"conv32k3p1-bn-relu-pool2-fc10"), the peer builds the same layers from the same string,
so the two sides always train the same network. The grammar is model/config.hpp's:

  convNkK[sS][pP]  Conv2d(C, N, K, S, P) (with bias, as augflow's plain conv)
  fcN              Linear (flattens its input first)
  bn               BatchNorm2d after a conv, BatchNorm1d after an fc
  relu | lrelu[A] | tanh
  poolK[sS][pP]    MaxPool2d(K, S, P)           avgpoolK   AvgPool2d(K)
  gap              global average pool to N x C  flatten    Flatten
  dropP            Dropout(P)                    dcP        DropConnect(P) on the next fc
  resN[sS][b0]     basic residual block (see Residual below)
  sdP              stochastic depth: survival 1 - i/n (1 - P) for the i-th of n res blocks
Presets: twolayer, mlp, cnn-small, resnet-mini (C = the class count). The JSON form of
model specs is not read here: give the compact form.

Initialisation is torch's default (what a PyTorch user gets), not augflow's He-normal:
the peer trains the same architecture, each side with its own usual defaults.
"""

import re

import torch
from torch import nn

# model/config.cpp's presets; "C" is the class count.
PRESETS = {
    "twolayer": "fc50-relu-fcC",
    "mlp": "fc512-relu-drop0.2-fc256-relu-fcC",
    "cnn-small": "conv32k3p1-bn-relu-pool2-conv64k3p1-bn-relu-pool2-fc128-relu-fcC",
    "resnet-mini": "conv16k3p1-bn-relu-res16-res32s2-res64s2-gap-fcC-sd0.8",
}

_NUMBER = r"(\d+(?:\.\d*)?|\.\d+)"
_TOKENS = [
    ("conv", re.compile(r"conv(\d+)k(\d+)(?:s(\d+))?(?:p(\d+))?$")),
    ("fc", re.compile(r"fc(\d+)$")),
    ("bn", re.compile(r"bn$")),
    ("relu", re.compile(r"relu$")),
    ("lrelu", re.compile(r"lrelu%s?$" % _NUMBER)),
    ("tanh", re.compile(r"tanh$")),
    ("avgpool", re.compile(r"avgpool(\d+)$")),
    ("pool", re.compile(r"pool(\d+)(?:s(\d+))?(?:p(\d+))?$")),
    ("gap", re.compile(r"gap$")),
    ("flatten", re.compile(r"flatten$")),
    ("drop", re.compile(r"drop%s$" % _NUMBER)),
    ("dc", re.compile(r"dc%s$" % _NUMBER)),
    ("res", re.compile(r"res(\d+)(?:s(\d+))?(?:b([01]))?$")),
    ("sd", re.compile(r"sd%s$" % _NUMBER)),
]
FORMS = ("convNkK[sS][pP], fcN, bn, relu, lrelu[A], tanh, poolK[sS][pP], avgpoolK, gap, "
         "flatten, dropP, dcP, resN[sS][b0], sdP joined by '-'; presets: " + ", ".join(PRESETS))


class SpecError(ValueError):
    """A model spec this module cannot build: the message names the token and what is accepted."""


def expand_preset(spec, classes):
    spec = spec.strip()
    if spec in PRESETS:
        return PRESETS[spec].replace("C", str(classes))
    if spec.startswith("{"):
        raise SpecError("model spec: the JSON form is not supported by the peer; give the "
                        "compact form (augflow prints it in RUNDIR/config.json's \"model\")")
    return spec


def parse_spec(spec, classes):
    """[(kind, groups)] for each token of the spec (a preset expands first)."""
    text = expand_preset(spec, classes)
    tokens = []
    for i, token in enumerate(text.split("-")):
        for kind, pattern in _TOKENS:
            m = pattern.match(token)
            if m:
                tokens.append((kind, m.groups()))
                break
        else:
            raise SpecError("model spec '%s': token %d '%s' is not one of: %s" % (
                text, i, token, FORMS))
    return tokens


class GlobalAvgPool(nn.Module):
    def forward(self, x):
        return x.mean(dim=(2, 3))


class DropConnectLinear(nn.Linear):
    """Linear with DropConnect as augflow's Dense does it: one weight mask per batch, kept
    weights scaled by 1 / (1 - P) in training, W unchanged in eval; the bias is never masked."""

    def __init__(self, in_features, out_features, p):
        super().__init__(in_features, out_features)
        self.p = p

    def forward(self, x):
        if not self.training or self.p == 0:
            return super().forward(x)
        mask = torch.empty_like(self.weight).bernoulli_(1 - self.p) / (1 - self.p)
        return nn.functional.linear(x, self.weight * mask, self.bias)


class Residual(nn.Module):
    """augflow's Residual (model/residual.hpp): branch conv3x3(stride s)-bn-relu-conv3x3-bn
    (convs without bias), shortcut identity or conv1x1(stride s)-bn when the shape changes;
    y = relu(shortcut + g * branch). b0: no batch norm, convs with bias. Stochastic depth:
    g ~ Bernoulli(survival) per sample in training, g = survival in eval."""

    def __init__(self, cin, cout, stride, batch_norm, survival):
        super().__init__()
        bias = not batch_norm
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=bias)
        self.bn1 = nn.BatchNorm2d(cout) if batch_norm else nn.Identity()
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=bias)
        self.bn2 = nn.BatchNorm2d(cout) if batch_norm else nn.Identity()
        self.proj = None
        if cin != cout or stride != 1:
            self.proj = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, 0, bias=bias),
                                      nn.BatchNorm2d(cout) if batch_norm else nn.Identity())
        self.survival = survival

    def forward(self, x):
        branch = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        shortcut = x if self.proj is None else self.proj(x)
        if self.survival < 1:
            if self.training:
                gate = torch.empty(x.shape[0], 1, 1, 1, dtype=x.dtype).bernoulli_(self.survival)
                branch = branch * gate
            else:
                branch = branch * self.survival
        return torch.relu(shortcut + branch)


def _out_size(size, k, s, p):
    return (size + 2 * p - k) // s + 1


def build_model(spec, input_shape, classes):
    """nn.Sequential for `spec` (compact form or preset) on C x H x W inputs `input_shape`.
    Raises SpecError for a token it cannot read or a layer that does not fit its input."""
    tokens = parse_spec(spec, classes)
    survival_last = 1.0
    for kind, g in tokens:
        if kind == "sd":
            survival_last = float(g[0])
    res_total = sum(1 for kind, _ in tokens if kind == "res")
    if survival_last < 1.0 and res_total == 0:
        raise SpecError("model spec '%s': sdP needs at least one res block" % spec)

    shape = tuple(input_shape)  # (C, H, W) or (F,)
    layers = []
    pending_dc = 0.0
    res_seen = 0
    for i, (kind, g) in enumerate(tokens):
        where = "model spec '%s': token %d (%s) on input %s" % (
            spec, i, kind, "x".join(map(str, shape)))
        spatial = len(shape) == 3
        if kind in ("conv", "pool", "avgpool", "gap", "res") and not spatial:
            raise SpecError(where + ": needs an image-shaped (C x H x W) input")
        if kind == "conv":
            out, k = int(g[0]), int(g[1])
            s, p = int(g[2] or 1), int(g[3] or 0)
            layers.append(nn.Conv2d(shape[0], out, k, s, p))
            shape = (out, _out_size(shape[1], k, s, p), _out_size(shape[2], k, s, p))
        elif kind == "fc":
            features = 1
            for d in shape:
                features *= d
            if spatial:
                layers.append(nn.Flatten())
            out = int(g[0])
            layers.append(DropConnectLinear(features, out, pending_dc) if pending_dc > 0
                          else nn.Linear(features, out))
            pending_dc = 0.0
            shape = (out,)
        elif kind == "bn":
            layers.append(nn.BatchNorm2d(shape[0]) if spatial else nn.BatchNorm1d(shape[0]))
        elif kind == "relu":
            layers.append(nn.ReLU())
        elif kind == "lrelu":
            layers.append(nn.LeakyReLU(float(g[0]) if g[0] else 0.01))
        elif kind == "tanh":
            layers.append(nn.Tanh())
        elif kind == "pool":
            k = int(g[0])
            s, p = int(g[1] or k), int(g[2] or 0)
            layers.append(nn.MaxPool2d(k, s, p))
            shape = (shape[0], _out_size(shape[1], k, s, p), _out_size(shape[2], k, s, p))
        elif kind == "avgpool":
            k = int(g[0])
            layers.append(nn.AvgPool2d(k))
            shape = (shape[0], _out_size(shape[1], k, k, 0), _out_size(shape[2], k, k, 0))
        elif kind == "gap":
            layers.append(GlobalAvgPool())
            shape = (shape[0],)
        elif kind == "flatten":
            if spatial:
                layers.append(nn.Flatten())
                shape = (shape[0] * shape[1] * shape[2],)
        elif kind == "drop":
            layers.append(nn.Dropout(float(g[0])))
        elif kind == "dc":
            pending_dc = float(g[0])
        elif kind == "res":
            res_seen += 1
            out, s = int(g[0]), int(g[1] or 1)
            batch_norm = g[2] != "0"
            survival = 1.0 - res_seen / res_total * (1.0 - survival_last)
            layers.append(Residual(shape[0], out, s, batch_norm, survival))
            shape = (out, _out_size(shape[1], 3, s, 1), _out_size(shape[2], 3, s, 1))
        # "sd" was read above: it is not a layer.
        if any(d < 1 for d in shape):
            raise SpecError(where + ": the output would be empty (%s)" % "x".join(map(str, shape)))
    if shape != (classes,):
        raise SpecError("model spec '%s': the last layer gives %s outputs, the data has %d classes" % (
            spec, "x".join(map(str, shape)), classes))
    return nn.Sequential(*layers)


def parameter_count(model):
    return sum(p.numel() for p in model.parameters())
