"""The Verify Model report: what a model check found, and how the page shows it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from app.core.markup import code, escape_inline, escape_markdown


@dataclass
class ModelCheck:
    """What Verify Model found. `markdown()` is the report the page shows.

    Attributes:
        arch: timm architecture; source: "file", "bundled", "hub" or "random".
        weights: the model file's name (None without a file); file_format: what it held, in words.
        parameters: backbone and classifier (the kept one, or the new head) together.
        input_size: (C, H, W) fed to the model; num_features: embedding width.
        file_classes: outputs of the model's own classifier (None without a usable one).
        labels: the project's labels.
        head: "kept" (the model's classifier predicts the labels), "replaced" (other classes) or "new" (none).
        message: one sentence saying what happened to the classifier.
        loaded, expected, missing, unexpected, dropped: how a file's tensors matched the architecture.
        image, output_shape, seconds: the forward pass.
        top: the kept classifier's best guesses (label, probability); own_top: the model's own classes' guesses.
        max_difference: largest logit difference between the full timm model and Linear(pooled features).
        notes: anything else worth saying.
    """

    arch: str
    source: str
    weights: str | None
    file_format: str | None
    parameters: int
    backbone_parameters: int
    input_size: tuple[int, ...]
    num_features: int
    file_classes: int | None
    labels: list[str]
    head: str  # "kept" (the model's classifier predicts the labels), "replaced" or "new"
    message: str
    loaded: int | None = None
    expected: int | None = None
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    image: str = ""
    output_shape: tuple[int, ...] = ()
    seconds: float = 0.0
    top: list[tuple[str, float]] = field(default_factory=list)
    own_top: list[tuple[str, float]] = field(default_factory=list)
    max_difference: float | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def markdown(self) -> str:
        """The report: what happened to the classifier, a list of facts, then the keys that did not match.

        Names from the person or the file (architecture, file and image names, labels, class names, tensor keys)
        are escaped, so they show as text, never as Markdown or HTML.
        """
        lines = ["### Model check passed ✓", "", escape_inline(self.message), ""]
        lines += [f"- **{k}:** {v}" for k, v in self._rows()]
        for title, keys in (("Missing from the file", self.missing), ("Unexpected in the file", self.unexpected)):
            if keys:
                shown = ", ".join(code(k) for k in keys[:20])
                shown += f" and {len(keys) - 20} more" if len(keys) > 20 else ""
                lines += ["", f"**{title}** ({len(keys)}): {shown}"]
        lines += [""] + [f"- {escape_inline(note)}" for note in self.notes]
        return "\n".join(lines).strip()

    def _rows(self) -> list[tuple[str, str]]:
        """The facts of the report as (name, Markdown value) pairs."""
        weights = (
            f"{code(self.weights)} ({self.file_format})" if self.weights else _SOURCE_WEIGHTS.get(self.source, "—")
        )
        params = f"{self.parameters:,} (backbone {self.backbone_parameters:,} + classifier "
        params += f"{self.parameters - self.backbone_parameters:,})"
        labels = ", ".join(escape_markdown(label) for label in self.labels)
        rows = [
            ("Architecture", f"{code(self.arch)} ({_SOURCE_NAMES.get(self.source, self.source)})"),
            ("Weights", weights),
            ("Parameters", params),
            ("Input size", " × ".join(str(s) for s in self.input_size)),
            ("Features", f"{self.num_features} per image"),
            ("Classes in the model", "none" if self.file_classes is None else str(self.file_classes)),
            ("Project labels", f"{len(self.labels)}: {labels}" if self.labels else "—"),
            ("Classifier", _HEAD_NAMES[self.head]),
        ]
        if self.loaded is not None:
            matched = f"{self.loaded} of {self.expected} tensors loaded; {len(self.missing)} missing; "
            matched += f"{len(self.unexpected)} unexpected; 0 shape mismatches"
            if self.dropped:
                matched += f"; classifier set aside: {', '.join(code(k) for k in self.dropped)}"
            rows.append(("Weights matched", matched))
        rows.append(("Forward pass", f"{code(self.image)} → output {tuple(self.output_shape)} in {self.seconds:.2f} s"))
        if self.top:
            rows.append(("Model's guess", _guesses(self.top)))
        elif self.own_top:
            rows.append(("Its own classes' guess", _guesses(self.own_top)))
        if self.max_difference is not None:
            rows.append(("Head check", f"same logits as the full model (largest difference {self.max_difference:.1e})"))
        return rows


def _guesses(top: list[tuple[str, float]]) -> str:
    return ", ".join(f"{escape_markdown(name)} {p:.1%}" for name, p in top)


_HEAD_NAMES = {"kept": "kept, its guesses are shown", "replaced": "replaced by a new head", "new": "a new head"}
_SOURCE_WEIGHTS = {
    "bundled": "ImageNet weights bundled with the app",
    "hub": "pretrained weights from the Hugging Face hub",
    "random": "random (untrained)",
}
_SOURCE_NAMES = {"bundled": "bundled, offline", "hub": "Hugging Face hub", "file": "local file", "random": "random"}


def failure_markdown(message: str) -> str:
    """The report for a model that could not be loaded."""
    return f"### Model check failed ✗\n\n{escape_inline(message)}"
