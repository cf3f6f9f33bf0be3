"""Command line: ``convdp layers ARCH`` lists the layer names a config can use;
``convdp make-parts DIR`` writes a planted-parts data set with its part masks
(:mod:`convdp.parts`).

ARCH is ``digitnet``, a torchvision classifier (``vgg16``), ``timm:NAME`` (timm installed)
or your own ``module:factory`` (importable from PYTHONPATH or the working directory).

Example::

    $ convdp layers vgg16 --size 224
    features.0        Conv2d        (64, 224, 224)
    features.1        ReLU          (64, 224, 224)
    ...
    features.22 *     ReLU          (512, 28, 28)     <- block4_conv3 after its ReLU
"""

from __future__ import annotations

import argparse
import sys


def _positive(text: str) -> int:
    """argparse type: an integer of at least 1 (0 was taken as "the default")."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def list_layers(arch: str, size: int | None = None, num_classes: int | None = None,
                model=None) -> list[tuple[str, str, tuple]]:
    """(name, kind, output shape C×H×W) for every graph node of ``arch`` (random weights).

    ``num_classes`` None: the architecture's default (a factory's own).
    """
    import torch

    from convdp.extract import feature_extractor
    from convdp.models import build_model, input_channels, layer_names

    if model is None:
        model = build_model(arch, num_classes, None).eval()
    in_ch = input_channels(model) or 3
    size = (32 if arch == "digitnet" else 224) if size is None else size
    names = layer_names(model)
    modules = dict(model.named_modules())
    try:
        with torch.no_grad():
            outs = feature_extractor(model, names)(torch.zeros(1, in_ch, size, size))
    except (RuntimeError, ValueError) as exc:
        raise ValueError(f"{arch}: the forward pass of a {in_ch}×{size}×{size} image fails "
                         f"({str(exc).splitlines()[0]}); give the input size with --size") from None
    return [(n, type(modules[n]).__name__ if n in modules else "function",
             tuple(outs[n].shape[1:]) if isinstance(outs[n], torch.Tensor)
             else f"({type(outs[n]).__name__}, not a tensor)") for n in names]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="convdp", description="convdp's tools beside the workflow: the layer names a "
        "config can use, and a planted-parts data set with part masks.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("layers", help="list an architecture's layer names (graph nodes)")
    p.add_argument("arch", help="digitnet, a torchvision classifier (vgg16, resnet18, ...), "
                   "timm:NAME, or your own module:factory")
    p.add_argument("--size", type=_positive, default=None,
                   help="input size (default 32 digitnet, 224 else)")
    p.add_argument("--num-classes", type=_positive, default=None,
                   help="output classes (default: the architecture's own)")
    q = sub.add_parser("make-parts", help="write a planted-parts image folder with part masks")
    q.add_argument("dest", help="folder to write (images/, masks/, parts.json)")
    q.add_argument("--n", type=int, default=400, help="number of images (default 400)")
    q.add_argument("--size", type=int, default=64, help="image side in pixels (default 64)")
    q.add_argument("--objects", type=int, default=1, help="objects per image (default 1)")
    q.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    args = parser.parse_args(argv)
    if args.command == "make-parts":
        return _make_parts(args)

    from convdp.models import block_layers, build_model

    try:
        model = build_model(args.arch, args.num_classes, None).eval()
        rows = list_layers(args.arch, args.size, model=model)
    except ValueError as exc:
        print(f"convdp: {exc}", file=sys.stderr)
        return 2
    if not rows:
        print(f"convdp: {args.arch} has no layers to list (its graph holds nothing between its "
              "input and its output)", file=sys.stderr)
        return 2
    try:
        blocks, note = set(block_layers(model)), ""
    except ValueError as exc:  # no blocks found: the list without marks
        blocks, note = set(), f" — for this net: {exc}"
    width = max(len(r[0]) for r in rows) + 2
    for name, kind, shape in rows:
        mark = "*" if name in blocks else " "
        print(f"{name:<{width}}{mark} {kind:<20} {shape}")
    print(f"\n* = in 'layers: blocks' (the output of every conv block){note}")
    return 0


def _make_parts(args) -> int:
    from convdp.parts import make_parts

    try:
        root = make_parts(args.dest, args.n, args.size, args.seed, args.objects)
    except ValueError as exc:
        print(f"convdp: {exc}", file=sys.stderr)
        return 2
    print(f"{args.n} images in {root / 'images'}, their part masks in {root / 'masks'} "
          "(0 background, 1 body, 2 head, 3 tail)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
