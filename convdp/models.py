"""The nets: a small convnet trained in the pipeline, any torchvision classifier, a timm
model (``timm:NAME``, with the optional extra ``convdp[timm]``), or your own
(``package.module:factory``).

Your own model: ``arch: "mymodule:build"`` imports ``mymodule`` (from ``PYTHONPATH``, or the
working directory) and calls ``build``, which must return an ``nn.Module``. The factory is
called with the keyword arguments its signature names among ``num_classes`` (the config's
``num_classes``, or the number of classes trained on with ``weights: train``; not passed when
neither is known, so the factory's default holds) and ``in_channels``; a factory that names
neither is called with no arguments and its net is used as it is. Its input channels are read
from its first convolution. ``weights:`` is then a ``state_dict`` file saved with
``torch.save(net.state_dict(), path)``; keys that do not fit are named (missing, unexpected,
shape mismatch).

Layers are named the way torchvision's ``feature_extraction`` names graph nodes
(``get_graph_node_names``), e.g. ``relu3`` for :class:`DigitNet` or ``features.22`` for
VGG16 (Keras' ``block4_conv3`` after its ReLU): listing and checking them is
:mod:`convdp.layers`; training a net is :mod:`convdp.training`. Both are importable from here
too (``from convdp.models import layer_names, train_classifier``).

A checkpoint is a plain ``state_dict`` (``{model}.pt``, loaded with
``torch.load(weights_only=True)``: anything that would need arbitrary unpickling is refused)
plus ``{model}.json``: architecture, number of classes, input channels and size,
normalisation, layer names, the classes trained on and the held-out accuracy.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import pickle
import threading
from collections.abc import Mapping
from pathlib import Path
from unittest import mock

import torch
from torch import nn

# the layer and training functions, importable from here as before the split
from convdp.layers import block_layers, check_layers, eval_graph, layer_names, layer_positions  # noqa: F401
from convdp.training import (  # noqa: F401
    channel_stats,
    check_classes,
    evaluate,
    resolve_device,
    to_input,
    train_classifier,
)

log = logging.getLogger(__name__)


class DigitNet(nn.Module):
    """Four 3×3 convolutions with ReLU, max pooling between them, and a linear head.

    Input (N, C, 32, 32). Layer outputs: ``relu1`` (16×32×32), ``relu2`` (32×16×16),
    ``relu3`` (64×8×8), ``relu4`` (64×4×4).
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1, width: int = 16):
        super().__init__()
        w = [width, 2 * width, 4 * width, 4 * width]
        self.conv1 = nn.Conv2d(in_channels, w[0], 3, padding=1)
        self.relu1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(w[0], w[1], 3, padding=1)
        self.relu2 = nn.ReLU()
        self.pool2 = nn.MaxPool2d(2)
        self.conv3 = nn.Conv2d(w[1], w[2], 3, padding=1)
        self.relu3 = nn.ReLU()
        self.pool3 = nn.MaxPool2d(2)
        self.conv4 = nn.Conv2d(w[2], w[3], 3, padding=1)
        self.relu4 = nn.ReLU()
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(w[3], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(self.relu1(self.conv1(x)))
        x = self.pool2(self.relu2(self.conv2(x)))
        x = self.pool3(self.relu3(self.conv3(x)))
        x = self.relu4(self.conv4(x))
        return self.fc(torch.flatten(self.gap(x), 1))


LOCAL_ARCHS = {"digitnet": DigitNet}


def arch_kind(arch: str) -> str:
    """``digitnet``, ``timm`` (``timm:NAME``), ``factory`` (``module:callable``) or
    ``torchvision``."""
    if arch in LOCAL_ARCHS:
        return "digitnet"
    if arch.startswith("timm:"):
        return "timm"
    return "factory" if ":" in arch else "torchvision"


def build_model(arch: str, num_classes: int | None, in_channels: int | None = 3,
                builder: Mapping | None = None) -> nn.Module:
    """An untrained net: ``digitnet``, a torchvision classification architecture name,
    ``timm:NAME`` or ``module:factory`` (see the module docstring).

    ``num_classes`` None: the architecture's default (10 for digitnet, 1000 for torchvision and
    timm, the factory's own). ``in_channels`` None: the architecture's own (3, or what a
    factory builds). ``builder``: settings for a torchvision builder that a weights name gave
    the net (:func:`builder_settings`; the model JSON's ``builder``).
    """
    kind = arch_kind(arch)
    if builder and kind != "torchvision":
        raise ValueError(f"architecture {arch!r}: builder settings {dict(builder)} are for "
                         "torchvision's own nets")
    if kind == "factory":
        return _build_from_factory(arch, num_classes, in_channels)
    if kind == "timm":
        return _build_timm(arch[len("timm:"):], num_classes, in_channels)
    if arch in LOCAL_ARCHS:
        return LOCAL_ARCHS[arch](num_classes=num_classes or 10, in_channels=in_channels or 1)
    import torchvision

    available = torchvision.models.list_models(module=torchvision.models)
    if arch not in available:
        raise ValueError(
            f"unknown architecture {arch!r}; choose 'digitnet', a torchvision classifier "
            f"({', '.join(sorted(available))}), 'timm:NAME' or your own 'module:factory'"
        )
    if in_channels not in (None, 3):
        raise ValueError(f"{arch} takes 3-channel images, got in_channels={in_channels}")
    # a JSON round trip makes a tuple setting a list
    settings = {k: tuple(v) if isinstance(v, list) else v for k, v in (builder or {}).items()}
    return torchvision.models.get_model(arch, weights=None, num_classes=num_classes or 1000,
                                        **settings)


def builder_settings(arch: str, net: nn.Module, num_classes: int) -> dict:
    """The settings that a torchvision weights name's builder gave ``net`` and a build from
    the architecture's name alone does not: each argument of ``type(net)``'s constructor
    whose plain value on ``net`` differs from a weights-free build's (GoogLeNet's and
    Inception v3's ``transform_input`` on, GoogLeNet's ``aux_logits`` off, a SWAG ViT's
    ``image_size``). :func:`load_model` passes them to the builder, so that the net it
    rebuilds computes as ``net`` does."""
    import inspect

    plain = build_on_meta(arch, num_classes, 3)
    if type(plain) is not type(net):
        return {}
    settings = {}
    for name in inspect.signature(type(net).__init__).parameters:
        if name in ("self", "num_classes") or not (hasattr(net, name) and hasattr(plain, name)):
            continue
        value = getattr(net, name)
        if _plain(value) and _plain(getattr(plain, name)) and value != getattr(plain, name):
            settings[name] = value
    return settings


@functools.lru_cache(maxsize=32)
def _named_builder_settings(arch: str, weights: str) -> tuple:
    import torchvision

    w = torchvision.models.get_weight(weights)
    # the builder run on the meta device with its download and its load skipped: only the
    # settings it gives the net are wanted
    with (mock.patch.object(type(w), "get_state_dict", lambda self, *a, **k: {}),
          mock.patch.object(nn.Module, "load_state_dict", lambda self, *a, **k: None)):
        try:
            with torch.device("meta"):
                net = torchvision.models.get_model(arch, weights=w)
        except NotImplementedError:  # a builder that reads its tensors' values: RegNet's
            with _weights_on_meta():
                net = torchvision.models.get_model(arch, weights=w)
    categories = w.meta.get("categories") or []
    return tuple(builder_settings(arch, net, len(categories) or 1000).items())


def spec_builder(spec: dict) -> dict:
    """:func:`builder_settings` for a model spec whose ``weights`` is a torchvision weights
    name, found without the weights (its builder run on the meta device, the download
    skipped), so that the config's checks, the net's random-weights control and its
    retraining build the net the name builds; ``{}`` for any other spec (or a name torchvision
    does not know: :func:`load_pretrained` says so; or a builder that does not run without
    its weights: the downloaded net's own settings are recorded there)."""
    weights = spec.get("weights")
    if (arch_kind(spec["arch"]) != "torchvision" or weights in (None, "train", "none")
            or Path(weights).suffix in (".pt", ".pth", ".bin") or Path(weights).exists()):
        return {}
    try:
        return dict(_named_builder_settings(spec["arch"], weights))
    except Exception as exc:  # noqa: BLE001 - a builder that does not run so
        # load_pretrained records what the downloaded net's builder set, and checks it
        log.debug("%s with %s: no builder settings found without the weights (%s)",
                  spec["arch"], weights, exc)
        return {}


def _as_rebuilt(arch: str, net: nn.Module, num_classes: int, builder: dict,
                size: int) -> nn.Module:
    """``net`` (built from a weights name) as :func:`load_model` rebuilds it from ``arch``
    and ``builder``: the same weights in the net the builder makes with those settings (a
    weights name's builder can leave traces a build does not: GoogLeNet's auxiliary heads
    set to None after loading, where a build without them never makes them). Refused, naming
    the settings, where the two compute otherwise on a random image of ``size`` px."""
    rebuilt = build_model(arch, num_classes, 3, builder).eval()
    fit_state_dict(rebuilt, net.state_dict(), f"the weights of {arch!r}",
                   f"architecture {arch!r} built with {builder}")
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a, b = net(x), rebuilt(x)
    if not torch.allclose(a, b, rtol=1e-4, atol=1e-4 * float(a.abs().max())):
        raise ValueError(
            f"architecture {arch!r}: the net its weights name builds computes otherwise than "
            f"the net built from its name with {builder}, the settings it differs in; give "
            "the weights as a state_dict file of a net you build")
    return rebuilt


def _import_factory(arch: str):
    """The callable that ``module:attr`` names; ValueError naming what could not be imported."""
    import importlib
    import sys

    module_name, _, attr = arch.partition(":")
    if not module_name or not attr:
        raise ValueError(f"architecture {arch!r}: write your own model as 'module:factory' "
                         "(e.g. 'mymodule:build' or 'mypackage.nets:resnet_tiny')")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or module_name
        cwd = os.getcwd()
        is_ours = module_name == missing or module_name.startswith(missing + ".")
        if is_ours and cwd not in sys.path:  # a module beside the config, as a script sees it
            sys.path.append(cwd)
            try:
                return _import_factory(arch)
            except ValueError:
                pass
            finally:
                sys.path.remove(cwd)
        if is_ours:
            raise ValueError(
                f"architecture {arch!r}: cannot import module {missing!r} (no module of that "
                "name on the Python path); put the folder that holds it on PYTHONPATH, "
                "or install its package") from None
        raise ValueError(f"architecture {arch!r}: module {module_name!r} imports {missing!r}, "
                         f"which is not installed: {exc}") from None
    except Exception as exc:
        raise ValueError(f"architecture {arch!r}: importing module {module_name!r} failed: "
                         f"{type(exc).__name__}: {exc}") from exc
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            names = sorted(n for n, v in vars(module).items()
                           if callable(v) and not n.startswith("_"))
            raise ValueError(f"architecture {arch!r}: module {module_name!r} "
                             f"({getattr(module, '__file__', '?')}) has no {attr!r}; its "
                             f"callables: {', '.join(names[:20]) or 'none'}"
                             + (f" and {len(names) - 20} more" if len(names) > 20 else ""))
        obj = getattr(obj, part)
    if not callable(obj):
        raise ValueError(f"architecture {arch!r}: {attr!r} in module {module_name!r} is a "
                         f"{type(obj).__name__}, not a callable that returns an nn.Module")
    return obj


def _plain(value) -> bool:
    """A setting whose repr is its value (numbers, strings, None, tuples of those)."""
    if isinstance(value, tuple | list):
        return all(map(_plain, value))
    return value is None or isinstance(value, bool | int | float | str)


def structure_digest(model: nn.Module) -> str:
    """sha256 of what ``model`` computes apart from its weights: its modules as printed, each
    module's type and plain settings (its attributes that are numbers, strings or tuples of
    them: ``count_include_pad``, ``align_corners``, ``num_heads``, ``transform_input``, which
    the printout leaves out), the values of its buffers outside the state_dict, and its
    forward pass as torch.fx traces it (evaluation mode). A changed ``nn.ReLU`` → ``nn.Tanh``,
    which leaves the state_dict as it was, changes it."""
    import hashlib

    code = eval_graph(model)[0].python_code("self").src
    h = hashlib.sha256(f"{model!r}\n{code}".encode())
    for name, module in model.named_modules():
        settings = sorted((k, v) for k, v in vars(module).items()
                          if not k.startswith("_") and k != "training" and _plain(v))
        h.update(f"\n{name}: {type(module).__module__}.{type(module).__qualname__} "
                 f"{settings!r}".encode())
        for key, buf in module.named_buffers(recurse=False):
            if key in module._non_persistent_buffers_set and buf is not None:
                h.update(f"\n{name}.{key} {tuple(buf.shape)} {buf.dtype}".encode())
                h.update(buf.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def factory_arguments(factory) -> set[str]:
    """Which of ``num_classes`` and ``in_channels`` the factory's signature names."""
    import inspect

    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return set()
    return {n for n in ("num_classes", "in_channels") if n in params
            and params[n].kind in (params[n].POSITIONAL_OR_KEYWORD, params[n].KEYWORD_ONLY)}


def _build_from_factory(arch: str, num_classes: int | None, in_channels: int | None) -> nn.Module:
    factory = _import_factory(arch)
    accepts = factory_arguments(factory)
    kwargs = {k: v for k, v in (("num_classes", num_classes), ("in_channels", in_channels))
              if k in accepts and v is not None}
    try:
        net = factory(**kwargs)
    except Exception as exc:
        call = ", ".join(f"{k}={v}" for k, v in kwargs.items())
        raise ValueError(f"architecture {arch!r}: calling {arch.partition(':')[2]}({call}) "
                         f"failed: {type(exc).__name__}: {exc}") from exc
    if not isinstance(net, nn.Module):
        raise ValueError(f"architecture {arch!r}: the factory returned a "
                         f"{type(net).__name__}, not a torch nn.Module")
    got = input_channels(net)
    if in_channels is not None and got is not None and got != in_channels and (
            "in_channels" not in accepts):
        raise ValueError(f"architecture {arch!r} takes {got}-channel images, got "
                         f"in_channels={in_channels} (a factory with an in_channels argument "
                         "gets the number asked for)")
    return net


def _build_timm(name: str, num_classes: int | None, in_channels: int | None) -> nn.Module:
    try:
        import timm
    except ImportError:
        raise ValueError(f"architecture 'timm:{name}' needs timm, which is not installed: "
                         "pip install 'convdp[timm]' (or pip install timm)") from None
    if not name or not timm.is_model(name):
        import difflib

        close = difflib.get_close_matches(name, timm.list_models(), n=5)
        raise ValueError(f"unknown timm architecture {name!r}"
                         + (f"; close names: {', '.join(close)}" if close else "")
                         + "; timm.list_models('PATTERN*') lists them")
    kwargs = {"num_classes": num_classes} if num_classes is not None else {}
    return timm.create_model(name, pretrained=False, in_chans=in_channels or 3, **kwargs)


def input_channels(model: nn.Module, graph=None) -> int | None:
    """The input channels of the first convolution ``model``'s forward runs (of the first it
    registers where its forward cannot be traced); None where it has none. ``graph``: the
    ``torch.fx`` graph of ``model`` where one is traced already (a feature extractor's),
    whose one-node modules (torchvision's ``Conv2dNormActivation``) are looked into."""
    convs = [m for m in model.modules() if isinstance(m, nn.modules.conv._ConvNd)]
    try:
        if graph is None:
            from torchvision.models.feature_extraction import NodePathTracer

            graph = NodePathTracer().trace(model)
        modules = dict(model.named_modules())
        called = (modules.get(n.target) for n in graph.nodes if n.op == "call_module")
        first = next((c for m in called if m is not None for c in m.modules()
                      if isinstance(c, nn.modules.conv._ConvNd)), None)
        convs = [first] if first is not None else convs
    except Exception:  # torch.fx cannot trace it: the registration order
        pass
    return convs[0].in_channels if convs else None


def spec_channels(spec: dict) -> int:
    """The input channels of a net not trained in the pipeline: the spec's ``in_channels``,
    else the architecture's own (:func:`native_channels`)."""
    return spec.get("in_channels") or native_channels(spec["arch"])


def native_channels(arch: str) -> int:
    """The input channels an architecture takes when it is not trained in the pipeline:
    1 for digitnet, 3 for torchvision and timm, a factory's from the net it builds."""
    kind = arch_kind(arch)
    if kind == "digitnet":
        return 1
    if kind != "factory":
        return 3
    return input_channels(build_on_meta(arch, None, None)) or 3


def build_on_meta(arch: str, num_classes: int | None, in_channels: int | None,
                  builder: Mapping | None = None) -> nn.Module:
    """The architecture without its weights in memory (the meta device), in evaluation mode;
    a factory that cannot build there is built on the CPU. A torchvision net whose builder
    computes with its tensors' values (RegNet's block widths) is built with only its
    parameters and buffers moved to the meta device as each is made
    (:func:`_weights_on_meta`), so that they are neither kept nor initialised (regnet_y_128gf:
    2.6 GB and ~5 s at every config read before). ``builder``: as :func:`build_model`'s."""
    try:
        with torch.device("meta"):
            return build_model(arch, num_classes, in_channels, builder).eval()
    except ValueError as exc:
        if arch_kind(arch) != "factory" or "failed:" not in str(exc):
            raise
        return build_model(arch, num_classes, in_channels, builder).eval()
    except NotImplementedError:  # "Cannot copy out of meta tensor"
        if arch_kind(arch) != "torchvision":
            raise
    with _weights_on_meta():
        return build_model(arch, num_classes, in_channels, builder).eval()


_META_LOCK = threading.RLock()  # one patched build at a time (nested in one thread: LIFO)


@contextlib.contextmanager
def _weights_on_meta():
    """Every parameter and buffer this thread registers inside is replaced by its meta-device
    copy as it is registered: the builder's own computations run on the CPU, the weights take
    no memory, and their initialisation (which runs after registration) computes nothing.
    The patch is on ``nn.Module`` itself, so other threads' modules pass through untouched,
    and builds on two threads take turns."""
    owner = threading.get_ident()
    with _META_LOCK:
        register_parameter = nn.Module.register_parameter
        register_buffer = nn.Module.register_buffer

        def parameter(module, name, param):
            if (param is not None and param.device.type != "meta"
                    and threading.get_ident() == owner):
                param = nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)
            register_parameter(module, name, param)

        def buffer(module, name, tensor, persistent=True):
            if tensor is not None and threading.get_ident() == owner:
                tensor = tensor.to("meta")
            register_buffer(module, name, tensor, persistent=persistent)

        nn.Module.register_parameter, nn.Module.register_buffer = parameter, buffer
        try:
            yield
        finally:
            nn.Module.register_parameter = register_parameter
            nn.Module.register_buffer = register_buffer


def fit_state_dict(model: nn.Module, state: dict, source: str, what: str) -> nn.Module:
    """Load ``state`` into ``model``; a ValueError names the keys that do not fit (missing,
    unexpected, shape mismatch). A ``module.`` prefix on every key (a net saved from
    ``DataParallel``) is taken off."""
    own = model.state_dict()
    if state and all(k.startswith("module.") for k in state) and not any(
            k.startswith("module.") for k in own):
        state = {k[len("module."):]: v for k, v in state.items()}
    # checkpoints saved before PyTorch 0.4.1 have no batch-norm counters (torch accepts that)
    missing = [k for k in own if k not in state and not k.endswith(".num_batches_tracked")]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k} (file {tuple(state[k].shape)}, net {tuple(own[k].shape)})"
              for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    # integers where the net has floats: quantised weights, whose scales are not in the file
    types = [f"{k} (file {state[k].dtype}, net {own[k].dtype})" for k in own if k in state
             and own[k].is_floating_point() and not state[k].is_floating_point()]
    if missing or unexpected or shapes or types:

        def few(keys: list[str]) -> str:
            return ", ".join(keys[:8]) + (f" and {len(keys) - 8} more" if len(keys) > 8 else "")

        parts = [f"{label}: {few(keys)}" for label, keys in (
            ("missing keys (in the net, not in the file)", missing),
            ("unexpected keys (in the file, not in the net)", unexpected),
            ("shape mismatch", shapes), ("type mismatch", types)) if keys]
        raise ValueError(f"{source} does not fit {what}: " + "; ".join(parts))
    model.load_state_dict(state, strict=False)  # every key was checked above
    return model


def save_state_dict(model: nn.Module, path: str | os.PathLike) -> None:
    """Save ``model.state_dict()`` (tensors on the CPU) atomically."""
    from convdp.io import atomic_path

    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    # Through a file handle: given a path, torch.save records the (random) temporary name in
    # the archive, and the same weights would give a different file (and fingerprint) each run.
    with atomic_path(path, ".pt") as tmp, open(tmp, "wb") as fh:
        torch.save(state, fh)


def load_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Load a plain ``state_dict`` with ``weights_only=True``.

    A file that needs arbitrary unpickling (a whole pickled model, custom objects) is
    refused with a clear message; it is never unpickled.
    """
    path = Path(path)
    import zipfile

    with open(path, "rb") as fh:
        head = fh.read(64)
    zipped = head[:4] == b"PK\x03\x04"
    if head.startswith(b"version https://git-lfs"):
        raise ValueError(f"{path} is a Git LFS pointer, not the weights: fetch them (git lfs pull)")
    if zipped and not zipfile.is_zipfile(path):  # torch's own error is a bare "Invalid argument"
        raise ValueError(f"{path} is truncated or damaged (an incomplete zip archive); save it again")
    if zipped:
        # torch.load does not check the archive's CRC-32s: a flipped byte in a tensor's record
        # (a bad copy, a damaged disk) loaded as a wrong weight without a word. Reading every
        # record once more (zipfile checks the CRC at its end) costs ~0.06 s per 200 MB. A
        # record stored with CRC 0 is not checked: torch writes 0 where it saves without
        # checksums (torch.utils.serialization.config.save.compute_crc32 = False).
        try:
            with zipfile.ZipFile(path) as archive:
                for info in archive.infolist():
                    if not info.CRC:
                        continue
                    try:
                        with archive.open(info) as record:
                            while record.read(1 << 24):
                                pass
                    except zipfile.BadZipFile as exc:
                        if "CRC" not in str(exc):
                            raise
                        raise ValueError(f"{path} is damaged: its record {info.filename} does not "
                                         "match its checksum (CRC-32); copy or save the weights "
                                         "again") from exc
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise ValueError(f"{path} is truncated or damaged ({exc}); save it again") from exc
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, AttributeError, TypeError) as exc:
        if isinstance(exc, RuntimeError) and "unexpected EOF" in str(exc):
            # a legacy (non-zip) torch.save file cut short, not one that needs unpickling
            raise ValueError(f"{path} is truncated ({str(exc).splitlines()[0]}); save or "
                             "copy it again") from exc
        raise ValueError(
            f"{path} is not a plain state_dict of tensors (it would need arbitrary unpickling, "
            "which convdp refuses for safety); save it with torch.save(model.state_dict(), ...). "
            f"Detail: {str(exc).splitlines()[0]}"
        ) from exc
    except EOFError as exc:
        raise ValueError(f"{path} is empty or truncated") from exc
    except Exception as exc:  # random bytes: pickle's KeyError, ValueError, …
        raise ValueError(f"{path} is not a file torch.save wrote (unreadable: "
                         f"{type(exc).__name__}: {exc})") from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path} is not a state_dict (a dict of parameter name → tensor)")
    return state


def load_model(meta: dict, weights_path: str | os.PathLike | None) -> nn.Module:
    """Rebuild the net that ``meta`` (the model JSON) describes and load its weights; refuse
    a rebuilt net that computes otherwise than the one the JSON was written for (its
    ``structure``, :func:`structure_digest`, which the JSON of a net not trained here has)."""
    model = build_model(meta["arch"], meta["num_classes"], meta["in_channels"],
                        meta.get("builder"))
    if weights_path is not None:
        fit_state_dict(model, load_state_dict(weights_path), str(weights_path),
                       f"architecture {meta['arch']!r}")
    model = model.eval()
    if meta.get("structure") and structure_digest(model) != meta["structure"]:
        raise ValueError(
            f"architecture {meta['arch']!r}: the net rebuilt from its name computes otherwise "
            "than the one its weights were saved from (a builder setting its weights name "
            "applies, such as Inception's transform_input, or a changed net of your own's "
            "code): its activations would not be that net's; rerun train_model, or give the "
            "weights as a state_dict file of the net as built")
    return model


def load_pretrained(spec: dict, seed: int = 0) -> tuple[nn.Module, dict]:
    """Build ``spec["arch"]`` with ``spec["weights"]``: ``none``, a torchvision weights name, or a file.

    A factory (``module:factory``) gets ``num_classes`` and ``in_channels`` only where the
    spec gives them; its input channels are then read from the net. Other architectures take
    the spec's ``in_channels``, else their own (:func:`spec_channels`); ``spec["builder"]``,
    where given, is passed to the builder (:func:`spec_builder`: a control of a net from a
    weights name). ``none`` draws the weights after ``torch.manual_seed(seed)``.

    Returns the net and what the model JSON needs to know (classes, channels, and the
    weights' own normalisation where they carry one). A torchvision weights name is
    downloaded once into the torch cache (``TORCH_HOME``).
    """
    arch, weights = spec["arch"], spec["weights"]
    kind = arch_kind(arch)
    if kind == "factory":  # the factory's own defaults, unless the config says
        num_classes, in_channels = spec.get("num_classes"), spec.get("in_channels")
    else:
        in_channels = spec_channels(spec)
        num_classes = spec.get("num_classes", 10 if kind == "digitnet" else 1000)
    extra: dict = {"in_channels": in_channels, "num_classes": num_classes, "classes": None}
    path = Path(weights)
    if weights == "none" or path.suffix in (".pt", ".pth", ".bin") or path.exists():
        if weights == "none":
            torch.manual_seed(seed)
        elif not path.exists():
            raise ValueError(f"weights file {path} does not exist")
        builder = spec.get("builder")  # a control of a net from a weights name: its settings
        net = build_model(arch, num_classes, in_channels, builder)
        if builder:
            extra["builder"] = dict(builder)
        if weights != "none":
            what = f"architecture {arch!r}" + (f" with num_classes={num_classes}"
                                               if num_classes is not None else "")
            fit_state_dict(net, load_state_dict(path), str(path), what)
        extra["in_channels"] = in_channels or input_channels(net) or 3
        return net.eval(), extra
    if kind != "torchvision":
        raise ValueError(f"weights {weights!r}: architecture {arch!r} takes 'none' or a "
                         "state_dict file (weights names are for torchvision's own nets)")
    import torchvision

    try:
        w = torchvision.models.get_weight(weights)
    except (ValueError, KeyError) as exc:
        raise ValueError(
            f"weights {weights!r} is neither 'train', 'none', an existing file, nor a torchvision "
            f"weights name such as 'VGG16_Weights.IMAGENET1K_V1'"
        ) from exc
    net = torchvision.models.get_model(arch, weights=w)
    transforms = w.transforms()
    categories = w.meta.get("categories") or []
    num_classes = len(categories) or num_classes
    builder = builder_settings(arch, net, num_classes)
    if builder:  # what the weights name set: load_model rebuilds the net with it
        extra["builder"] = builder
        net = _as_rebuilt(arch, net.eval(), num_classes, builder,
                          int((getattr(transforms, "crop_size", None) or [224])[0]))
    extra |= {
        "num_classes": num_classes,
        "class_names": list(categories),
        "mean": list(getattr(transforms, "mean", [])) or None,
        "std": list(getattr(transforms, "std", [])) or None,
    }
    return net.eval(), extra
