"""State dicts of timm models: the wrapper prefixes on their keys, how their tensors fit a model, their classifier."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from timm.models import clean_state_dict
from torch import nn

LIGHTNING_PREFIX = "model."  # a LightningModule's ``self.model``, which timm's ``clean_state_dict`` leaves alone


def strip_prefixes(tensors: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Remove the prefixes wrappers put on the keys; returns the tensors and the prefixes removed, in order.

    DDP's ``module.`` and ``torch.compile``'s ``_orig_mod.`` go through timm's ``clean_state_dict`` (key by key, as
    timm's own checkpoint loader removes them; skipped if that would merge two keys); Lightning's ``model.`` is
    removed when every key has it. Repeated until nothing changes, so the wrappers may nest in any order.
    """
    removed: list[str] = []
    while tensors:
        cleaned = clean_state_dict(tensors)
        if len(cleaned) == len(tensors) and list(cleaned) != list(tensors):
            cut = {k[: len(k) - len(c)] for k, c in zip(tensors, cleaned, strict=True)}
            removed += sorted(cut - {""})
            tensors = cleaned
        elif all(k.startswith(LIGHTNING_PREFIX) for k in tensors):
            tensors = {k[len(LIGHTNING_PREFIX) :]: v for k, v in tensors.items()}
            removed.append(LIGHTNING_PREFIX)
        else:
            break
    return tensors, removed


def classifier_prefixes(model: nn.Module) -> tuple[str, ...]:
    """Key prefixes of a timm model's classifier(s), e.g. ``("fc.",)`` for a ResNet, from its pretrained config."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    names = cfg.get("classifier") or ()
    if isinstance(names, str):
        names = (names,)
    return tuple(f"{n}." for n in names)


@dataclass
class KeyMatch:
    """How a file's tensors fit a model's state dict.

    Attributes:
        loaded: names loaded into the model.
        missing: model weights the file lacks (they keep their initial values).
        unexpected: file tensors the model has no place for.
        mismatched: ``(name, file shape, model shape)`` for tensors of the wrong shape.
        dropped_classifier: the file's classifier tensors, set aside (the backbone has no classifier).
    """

    loaded: list[str]
    missing: list[str]
    unexpected: list[str]
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]]
    dropped_classifier: list[str]


def match_keys(model: nn.Module, tensors: Mapping[str, torch.Tensor]) -> KeyMatch:
    """Compare a file's tensors with a (classifier-less) timm model's state dict, loading nothing."""
    expected = model.state_dict()
    heads = classifier_prefixes(model)
    dropped = sorted(k for k in tensors if k not in expected and heads and k.startswith(heads))
    kept = {k: v for k, v in tensors.items() if k not in dropped}
    mismatched = [
        (k, tuple(kept[k].shape), tuple(v.shape)) for k, v in expected.items() if k in kept and kept[k].shape != v.shape
    ]
    bad = {m[0] for m in mismatched}
    loaded = [k for k in kept if k in expected and k not in bad]
    missing = [k for k in expected if k not in kept and not k.endswith("num_batches_tracked")]
    unexpected = sorted(k for k in kept if k not in expected)
    return KeyMatch(loaded, missing, unexpected, mismatched, dropped)


def linear_classifier(
    model: nn.Module, tensors: Mapping[str, torch.Tensor], in_features: int
) -> tuple[torch.Tensor, torch.Tensor] | str:
    """The file's classifier as ``(weight (C, D), bias (C,))`` of a linear layer on the pooled features.

    Returns:
        The tensors, or the reason there is no usable linear classifier (a sentence).
    """
    prefixes = classifier_prefixes(model)
    if not prefixes:
        return "timm does not say which layer is this architecture's classifier"
    present = [p for p in prefixes if f"{p}weight" in tensors]
    if not present:
        return "the file has no classifier weights"
    if len(prefixes) > 1:
        return f"this architecture has {len(prefixes)} classifier heads ({', '.join(p[:-1] for p in prefixes)})"
    weight = tensors[f"{prefixes[0]}weight"]
    bias = tensors.get(f"{prefixes[0]}bias")
    if weight.dim() == 4 and weight.shape[2:] == (1, 1):
        weight = weight.flatten(1)  # a 1x1 convolution on pooled features is a linear layer
    if weight.dim() != 2:
        return f"its classifier '{prefixes[0][:-1]}' is not a linear layer"
    if weight.shape[1] != in_features:
        return f"its classifier takes {weight.shape[1]} features but the backbone gives {in_features}"
    if bias is None:
        bias = torch.zeros(weight.shape[0])
    return weight.detach().float().clone(), bias.detach().float().reshape(-1).clone()
