"""The training modes of a student: one type, parsed once, and the registries it reads.

A mode names what a student trains with, as ``[kd_]<source>[_at]``:

- ``kd``: the logits-distillation term (weight ``student.alpha``);
- ``<source>``: an overlay of attribution maps on the training images (probability
  ``student.p``): a *stored* source (computed and fingerprinted like the IG maps)
  or a *derived* control (made from the IG maps on the fly);
- ``at``: attention transfer (weight ``student.gamma``);
- ``student``: none of them (plain cross-entropy).

Adding an overlay source is one entry in ``STORED_SOURCES`` (with its compute
function in ``tfigkd.attribution.sources``) or ``DERIVED_SOURCES`` (with its
derivation in ``tfigkd.augment.controls``); the list of modes follows. Adding a
loss term is one entry in ``TERMS`` plus its weight in ``Mode.weights`` and its
object in ``tfigkd.distill.terms``.

This module imports nothing heavy, so configs validate modes without TensorFlow.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import NamedTuple, Optional

from tfigkd.errors import UserError

# Overlay sources stored on disk like the IG maps (tfigkd/attribution/sources.py).
STORED_SOURCES = ("ig", "ig_all_classes", "gradcam", "smoothgrad")
# Controls derived from the stored IG maps and the seed (tfigkd/augment/controls.py).
DERIVED_SOURCES = ("noise", "shuffled")
SOURCES = STORED_SOURCES + DERIVED_SOURCES
# Loss terms a mode can switch on besides the cross-entropy: prefix and suffix.
TERMS = ("kd", "at")


class Weights(NamedTuple):
    """The strengths a mode trains with: KD weight, overlay probability, AT weight."""
    alpha: float
    p: float
    gamma: float


@dataclass(frozen=True)
class Mode:
    """A parsed mode (``parse_mode``): which loss terms and which overlay it uses."""
    name: str
    kd: bool = False
    source: Optional[str] = None
    at: bool = False

    @property
    def overlay(self):
        return self.source is not None

    @property
    def control(self):
        """The overlay is a control (maps that are not the method's IG maps)."""
        return self.source in DERIVED_SOURCES

    @property
    def stored_source(self):
        """The stored maps the overlay needs (``ig`` for the derived controls), or None."""
        if self.source is None:
            return None
        return "ig" if self.source in DERIVED_SOURCES else self.source

    @property
    def needs_teacher(self):
        """A teacher is needed (for KD, AT, or the maps of an overlay)."""
        return self.kd or self.at or self.overlay

    def weights(self, scfg):
        """``Weights`` of this mode under a ``StudentConfig`` (0 for the terms it leaves off)."""
        return Weights(scfg.alpha if self.kd else 0.0, scfg.p if self.overlay else 0.0,
                       scfg.gamma if self.at else 0.0)

    def needs_logit_cache(self, scfg):
        """KD from the teacher's logits of the un-augmented images (``teacher_mode: cached``)."""
        return self.kd and scfg.alpha > 0 and scfg.teacher_mode == "cached"


def parse_mode(name):
    """The ``Mode`` a name stands for.

    Raises:
        UserError: For a name outside the grammar, with the closest valid one.
    """
    parts = str(name).split("_")
    kd = parts[:1] == ["kd"]
    if kd:
        parts = parts[1:]
    at = parts[-1:] == ["at"]
    if at:
        parts = parts[:-1]
    rest = "_".join(parts)
    if rest in ("", "student") and not (rest == "student" and (kd or at)):
        if rest == "student" or kd or at:
            return Mode(name, kd, None, at)
    elif rest in SOURCES:
        return Mode(name, kd, rest, at)
    close = difflib.get_close_matches(str(name), all_modes(), n=1)
    raise UserError(f"{name!r} is not a mode; modes read [kd_]SOURCE[_at] with SOURCE one of "
                    f"{', '.join(SOURCES)}, or student, kd, at, kd_at."
                    + (f" Did you mean {close[0]!r}?" if close else ""))


def all_modes():
    """Every valid mode name, derived from the registered sources and terms."""
    out = ["student", "kd", "at", "kd_at"]
    for s in SOURCES:
        out += [s, f"kd_{s}", f"{s}_at", f"kd_{s}_at"]
    return tuple(out)


MODES = all_modes()
