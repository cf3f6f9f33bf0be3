"""A net's layers by name: every graph node, the conv blocks' outputs, the layers a config
asks for (checked), and where each sits in the net's order.

Layers are named the way torchvision's ``feature_extraction`` names graph nodes
(``get_graph_node_names``), e.g. ``relu3`` for :class:`convdp.models.DigitNet` or
``features.22`` for VGG16 (Keras' ``block4_conv3`` after its ReLU); a module name that is not
a node (a ResNet stage, ``layer2``) stands for its last node.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn


def eval_graph(model: nn.Module):
    """``model``'s ``torch.fx`` graph in evaluation mode, traced as torchvision's feature
    extraction traces it (its leaf modules and wrapped functions), and each node's name
    there (``{node: name}``); the model's mode is restored."""
    from torchvision.models import feature_extraction

    tracer = feature_extraction.NodePathTracer(
        **feature_extraction._set_default_tracer_kwargs(None))
    training = model.training
    try:
        graph = tracer.trace(model.eval())
    finally:
        model.train(training)
    return graph, tracer.node_to_qualname


def layer_names(model: nn.Module) -> list[str]:
    """Every graph node name of ``model`` in evaluation mode (torchvision feature extraction)."""
    return _names(eval_graph(model)[1])


def _names(qualnames: dict) -> list[str]:
    return [n for n in qualnames.values() if n not in ("x", "input")]


def block_layers(model: nn.Module) -> list[str]:
    """The output of every conv block: the map each pooling step (a module or a function)
    shrinks.

    For VGG16 this is ``features.3, .8, .15, .22, .29`` (Keras' ``block1_conv2`` …
    ``block5_conv3``, after their ReLU); for :class:`DigitNet` ``relu1`` … ``relu4``; for
    ResNets the stem's ``relu`` and the stages ``layer1`` … ``layer4`` (module names); for
    DenseNets the stem, each transition's ``conv`` and the last block's ``relu`` (before the
    forward's functional global pool); for Inception v3 also the maps its reduction blocks'
    max pooling branches shrink. Nets
    that shrink their maps by strided convolutions instead (MobileNet, EfficientNet,
    ConvNeXt, RegNet, ShuffleNet) give the last part at each map size of the sequence of
    parts with the most map sizes (``features``, ``trunk_output``, the net's own children).
    A ValueError where fewer than two blocks are found: list the layers by name then.
    """
    import torch.nn.functional as F

    pool_modules = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)
    pool_functions = {F.max_pool2d, F.avg_pool2d, F.adaptive_avg_pool2d, F.adaptive_max_pool2d,
                      F.max_pool2d_with_indices}
    modules = dict(model.named_modules())
    graph, qualnames = eval_graph(model)
    nodes = _names(qualnames)
    sizes = _map_sizes(model, nodes)

    def pooled_input(node) -> str | None:
        """The name of the map a pooling node shrinks (None: no pooling, or no step)."""
        if not (node.op == "call_module" and isinstance(modules.get(node.target), pool_modules)
                or node.op == "call_function" and node.target in pool_functions):
            return None
        src = node.args[0] if node.args and node.args[0] in qualnames else None
        if src is None or src.op == "placeholder":
            return None
        name, into = qualnames[src], qualnames[node]
        # a stride-1 pool inside a branch is no step (where the sizes are known)
        if sizes and (sizes.get(into) is None or sizes.get(name) in (None, sizes[into])):
            return None
        return None if pooled_input(src) is not None else name  # pools in a row: one step

    out = list(dict.fromkeys(n for n in map(pooled_input, graph.nodes) if n is not None))
    stages = [n for n, _ in model.named_children() if n.startswith("layer") and n[5:].isdigit()]
    if stages:
        out = [n for n in out if not any(n.startswith(f"{s}.") for s in stages)] + stages
    if len(out) < 2:
        out = max([out, *_parts_by_size(modules, nodes, sizes, pool_modules)], key=len)
    if len(out) < 2:
        raise ValueError(
            f"'blocks' finds a net's conv blocks by the steps that shrink its maps "
            f"(pooling, or the parts of a sequence of stages), and found {out or 'none'} in "
            "this one; list its layers by name instead (`convdp layers ARCH` prints them)")
    # in the net's order, as check_layers asks of a list given by name: a map pooled after
    # the stages (a pre-activation ResNet's final BN + ReLU) was listed before them
    positions = node_positions(nodes, out)
    return [name for _, name in sorted(zip(positions, out, strict=True))]


def _parts_by_size(modules: dict, nodes: Sequence[str], sizes: dict, skip: tuple):
    """For each module with several children (MobileNet's ``features``, RegNet's
    ``trunk_output``, ShuffleNet's own stages): its last child (``skip`` types left out) at
    each map size, in order; the candidates for nets that shrink their maps by strided
    convolutions."""
    last: dict = {}  # the last node inside each module (its output), in one walk of the nodes
    for n in nodes:
        parts = n.split(".")
        for i in range(1, len(parts) + 1):
            last[".".join(parts[:i])] = n
    for name, module in modules.items():
        children = [f"{name}.{c}" if name else c for c, m in module.named_children()
                    if not isinstance(m, skip)]
        if len(children) < 2:
            continue
        by_size: dict = {}
        for part in children:
            size = sizes.get(last.get(part))
            if size is not None:
                by_size.pop(size, None)
                by_size[size] = part
        yield list(by_size.values())


def _map_sizes(model: nn.Module, nodes: Sequence[str]) -> dict[str, tuple[int, int] | None]:
    """Each node's spatial map size (None where its output is no (N, C, H, W) tensor) on one
    224 × 224 image, run on the net's own device (the meta device: shapes only)."""
    import torch
    from torchvision.models.feature_extraction import create_feature_extractor

    from convdp.models import input_channels

    like = next(model.parameters(), torch.empty(0))
    training = model.training
    try:
        with torch.no_grad():
            out = create_feature_extractor(model.eval(), list(nodes))(
                torch.zeros(1, input_channels(model) or 3, 224, 224, device=like.device,
                            dtype=like.dtype))
    except Exception:  # a net that cannot run at this size: sizes unknown, pooling decides
        return {}
    finally:
        model.train(training)
    return {n: tuple(v.shape[2:]) if isinstance(v, torch.Tensor) and v.dim() == 4 else None
            for n, v in out.items()}


def check_layers(model: nn.Module, requested: list[str] | str, model_name: str = "model") -> list[str]:
    """The layers ``requested`` (graph node or module names, or ``"blocks"``), checked.

    Raises a ValueError listing the model's layer names when one is unknown.
    """
    if requested == "blocks":
        return block_layers(model)
    if isinstance(requested, str):
        raise ValueError(f"layers must be a list of names or 'blocks', got {requested!r}")
    graph, qualnames = eval_graph(model)
    names = _names(qualnames)
    modules = {n for n, _ in model.named_modules() if n}
    missing = [r for r in requested if r not in names and r not in modules]
    if missing:
        raise ValueError(
            f"layer(s) {missing} not found in {model_name}; its layers are: " + ", ".join(names)
        )
    unused = [r for r in requested if r not in names
              and not any(n.startswith(f"{r}.") for n in names)]
    if unused:
        raise ValueError(f"layer(s) {unused} of {model_name} are modules its forward does not "
                         "use in evaluation mode (an auxiliary head used in training only, "
                         "say), so they have no output to analyse")
    if not requested:
        raise ValueError(f"no layers chosen for {model_name}")
    positions = node_positions(names, requested)
    same = [(i, j) for i in range(len(requested)) for j in range(i + 1, len(requested))
            if positions[i] == positions[j]]
    if same:  # the order's message would name the list as given, and one of them be dropped
        i, j = same[0]
        raise ValueError(
            f"layers {requested[i]!r} and {requested[j]!r} of {model_name} are the same graph "
            f"node ({names[int(positions[i])]!r}: a module that is not a node stands for its "
            "last node); list it once")
    if any(b <= a for a, b in zip(positions, positions[1:], strict=False)):
        ordered = [r for _, r in sorted(zip(positions, requested, strict=True))]
        raise ValueError(f"the layers of {model_name} must be listed from the input towards "
                         f"the output (the transfer verdict's cuts and the figures follow the "
                         f"list): {ordered}")
    dropped = _dropped_in_place(model, graph, qualnames)
    if dropped:
        raise ValueError(
            f"{model_name}'s forward makes in-place call(s) whose result it does not use "
            f"(graph node(s) {', '.join(dropped)}, e.g. a bare `x.relu_()` or "
            "`F.relu(x, inplace=True)`): torch.fx, through which convdp reads the layers, drops "
            "such calls, so the layers after them would not be the net's; assign the result "
            "(`x = x.relu_()`)"
        )
    return list(requested)


def _dropped_in_place(model: nn.Module, graph, qualnames: dict) -> list[str]:
    """The nodes of ``model``'s evaluation-mode ``graph`` (named by ``qualnames``,
    :func:`eval_graph`) that work in place and whose result nothing uses: torch.fx's
    dead-code elimination, which feature extraction runs, removes them although their input
    is changed."""
    import operator

    in_place_ops = {operator.iadd, operator.isub, operator.imul, operator.itruediv,
                    operator.ifloordiv, operator.imod, operator.ipow, operator.iand,
                    operator.ior, operator.ixor, operator.ilshift, operator.irshift}
    modules = dict(model.named_modules())

    def in_place(node) -> bool:
        if node.op == "call_module":
            return getattr(modules.get(node.target), "inplace", None) is True
        name = node.target if node.op == "call_method" else getattr(node.target, "__name__", "")
        return node.op in ("call_method", "call_function") and (
            (name.endswith("_") and not name.startswith("_"))
            or node.target in in_place_ops or node.kwargs.get("inplace") is True)

    return [qualnames.get(n, n.name) for n in graph.nodes if not n.users and in_place(n)]


def node_positions(nodes: Sequence[str], names: Sequence[str]) -> list[float]:
    """Where each of ``names`` sits among the graph ``nodes`` (:func:`layer_names`, in the
    net's order): a node's own index; a module that is not a node (a ResNet stage, a
    parameter's module), its last node's; ``inf`` for a name with no node."""
    pos = {n: i for i, n in enumerate(nodes)}

    def position(name: str) -> float:
        if name in pos:
            return pos[name]
        inside = [pos[n] for n in nodes if n.startswith(f"{name}.")]
        return max(inside) if inside else float("inf")

    return [position(name) for name in names]


def layer_positions(model: nn.Module, layers: Sequence[str]) -> dict[str, int]:
    """Each of ``layers``' position in ``model``'s graph order (see :func:`node_positions`):
    the same whatever else the config lists, so inserting a layer moves no other layer."""
    positions = node_positions(layer_names(model), layers)
    missing = [name for name, p in zip(layers, positions, strict=True) if p == float("inf")]
    if missing:
        raise ValueError(f"layer(s) {missing} are neither graph nodes nor modules of the net")
    return {name: int(p) for name, p in zip(layers, positions, strict=True)}
