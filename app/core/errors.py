"""Domain exceptions. Messages are written for the person using the app: what happened and what to do."""

from __future__ import annotations


class AppError(Exception):
    """Base class for every error the app reports to its user."""


class StoreError(AppError):
    """The project store refused an operation (unknown label, missing project, ...)."""


class LabelInUseError(StoreError):
    """A label cannot be deleted because annotations use it."""


class IngestError(AppError):
    """A data source could not be imported as a whole."""


class BadImageError(IngestError):
    """One file is not a usable image."""


class EmptyPoolError(AppError):
    """There are no unlabeled images left to pick from."""


class BackboneError(AppError):
    """A backbone could not be created or loaded."""


class ModelFileError(BackboneError):
    """A model file is unreadable, unsafe, or for a different architecture."""
