"""Which student block is matched to which teacher block in attention transfer.

KD needs only logits, so any student can learn from any teacher. Attention
transfer compares the spatial attention maps of a student block and a
teacher block, so the two must have the same height and width. These
helpers list the feature blocks (layers named ``features_{i}``), check
requested pairs, and pair blocks automatically by spatial size.
"""

from __future__ import annotations

import re

from tfigkd.errors import UserError

_FEATURE = re.compile(r"^features_(\d+)$")


def feature_blocks(model):
    """``[(name, (H, W)), ...]`` of the model's ``features_{i}`` layers, in block order."""
    found = []
    for layer in model.layers:
        m = _FEATURE.match(layer.name)
        if m:
            shape = tuple(layer.output.shape)
            found.append((int(m.group(1)), layer.name, tuple(int(d) for d in shape[1:3])))
    return [(name, hw) for _, name, hw in sorted(found)]


def valid_pairs(student, teacher):
    """Every (student block, teacher block) pair of equal spatial size."""
    t_blocks = feature_blocks(teacher)
    return [(s, t) for s, s_hw in feature_blocks(student) for t, t_hw in t_blocks if s_hw == t_hw]


def auto_pairs(student, teacher):
    """One pair per spatial size the two share: the deepest block of that size in each.

    The deepest block of a resolution carries the most processed features at
    that scale (the papers' choice, teacher block 9 at 8x8, is of this kind).

    Raises:
        UserError: If the models share no spatial size.
    """
    def deepest(model):
        out = {}
        for name, hw in feature_blocks(model):
            out[hw] = name  # later blocks overwrite earlier ones
        return out

    s, t = deepest(student), deepest(teacher)
    common = [hw for hw in s if hw in t]
    if not common:
        raise UserError(_no_pairs_message(student, teacher))
    return [(s[hw], t[hw]) for hw in common]


def check_pairs(student, teacher, pairs):
    """Checks requested ``[(student_layer, teacher_layer), ...]`` before any training.

    Raises:
        UserError: Naming the bad pair and listing the valid ones.
    """
    s_blocks, t_blocks = dict(feature_blocks(student)), dict(feature_blocks(teacher))
    for s_name, t_name in pairs:
        for name, blocks, who in ((s_name, s_blocks, "student"), (t_name, t_blocks, "teacher")):
            if name not in blocks:
                raise UserError(f"student.at_layers: the {who} has no feature block {name!r} "
                                f"(it has {', '.join(blocks) or 'none'}); "
                                f"{_valid_hint(student, teacher)}")
        if s_blocks[s_name] != t_blocks[t_name]:
            raise UserError(f"student.at_layers: {s_name!r} is {_hw(s_blocks[s_name])} but "
                            f"{t_name!r} is {_hw(t_blocks[t_name])}; attention transfer pairs "
                            f"blocks of equal spatial size. {_valid_hint(student, teacher)}")
    return [tuple(p) for p in pairs]


def resolve_pairs(student, teacher, pairs, pairing="manual"):
    """The AT pairs to train with: ``pairs`` checked, or ``auto_pairs`` when ``pairing == "auto"``."""
    if pairing == "auto":
        return auto_pairs(student, teacher)
    return check_pairs(student, teacher, pairs)


def _hw(hw):
    return f"{hw[0]}x{hw[1]}"


def _valid_hint(student, teacher):
    pairs = valid_pairs(student, teacher)
    if not pairs:
        return _no_pairs_message(student, teacher)
    shown = ", ".join(f"[{s}, {t}]" for s, t in pairs[:12])
    more = f" (and {len(pairs) - 12} more)" if len(pairs) > 12 else ""
    return f"Valid pairs: {shown}{more}; or set student.at_pairing: auto."


def _no_pairs_message(student, teacher):
    s = sorted({_hw(hw) for _, hw in feature_blocks(student)})
    t = sorted({_hw(hw) for _, hw in feature_blocks(teacher)})
    return (f"student.at_layers: no student block has the spatial size of a teacher block (student: {', '.join(s)}; "
            f"teacher: {', '.join(t)}), so attention transfer cannot pair them; use a mode "
            "without 'at' (KD works across any architectures).")
