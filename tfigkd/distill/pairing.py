"""Which student block is matched to which teacher block in attention transfer.

KD needs only logits, so any student can learn from any teacher. Attention
transfer compares the spatial attention maps of a student block and a
teacher block, so the two must cover the image on the same grid. These
helpers list the feature blocks (layers named ``features_{i}``), check
requested pairs, and pair blocks automatically.

When teacher and student take inputs of the same size, a pair is two blocks
of equal height and width (as in the papers). When their inputs differ (a
teacher at ``teacher.input_size``), equal sizes would pair blocks at
different depths of downsampling (a 96x96 teacher's 32x32 block is its
stride-3 map, the 32x32 student's is its input), so blocks are paired by
equal *stride* instead: the power of two s with ceil(input / s) = block,
per axis (``axis_stride``), which is exact under "same" padding even when
input / block is not whole (7 cells at 224 and 3 at 80 are both stride 32).
Grids that are not power-of-two pyramids fall back to the nearest cell. The loss then resizes the teacher's attention
map to the student block's size (``tfigkd.distill.losses.attention_map``).
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


def _input_hw(model):
    shape = tuple(model.input_shape[1:3])
    return None if None in shape else tuple(int(v) for v in shape)


def cross_resolution(student, teacher):
    """Whether the two take inputs of different (known) sizes: blocks then pair by stride."""
    s, t = _input_hw(student), _input_hw(teacher)
    return s is not None and t is not None and s != t


def blocks_match(student, teacher, s_hw, t_hw):
    """Whether a student block of size ``s_hw`` may be paired with a teacher block of ``t_hw``.

    Same input size: equal block sizes. Different input sizes: equal stride, i.e.
    the teacher block scaled to the student's input has the student block's size
    (rounded to the nearest cell).
    """
    if not cross_resolution(student, teacher):
        return tuple(s_hw) == tuple(t_hw)
    s_in, t_in = _input_hw(student), _input_hw(teacher)
    for s, t, si, ti in zip(s_hw, t_hw, s_in, t_in):
        ss, ts = axis_stride(si, s), axis_stride(ti, t)
        if ss is None or ts is None:  # not a power-of-two grid: the nearest cell decides
            if round(t * si / ti) != s:
                return False
        elif ss != ts:
            return False
    return True


def axis_stride(size, block):
    """The downsampling factor of a block of ``block`` cells on an input of ``size`` cells.

    Under "same" padding each stride-2 layer gives ``ceil(n / 2)`` cells, so
    a block of stride s has ``ceil(size / s)`` cells; this returns the
    smallest power of two s with that property (exact even when the ratio is
    not whole: 7 cells at 224 and 3 cells at 80 are both stride 32, while
    224/7 = 32 and 80/3 = 26.7). A 1-cell block is global (``inf``); None
    when no power of two fits (a grid that is not a power-of-two pyramid).
    """
    if block == 1:
        return float("inf")
    for k in range(0, 16):
        if -(-size // (1 << k)) == block:
            return 1 << k
    return None


def valid_pairs(student, teacher):
    """Every (student block, teacher block) pair of equal spatial size (equal stride
    when the inputs differ in size)."""
    t_blocks = feature_blocks(teacher)
    return [(s, t) for s, s_hw in feature_blocks(student) for t, t_hw in t_blocks
            if blocks_match(student, teacher, s_hw, t_hw)]


def auto_pairs(student, teacher):
    """One pair per spatial size (stride, when the inputs differ) the two share: the
    deepest block of that size in each.

    The deepest block of a resolution carries the most processed features at
    that scale (the papers' choice, teacher block 9 at 8x8, is of this kind).

    Raises:
        UserError: If the models share no spatial size (no stride).
    """
    def deepest(model):
        out = {}
        for name, hw in feature_blocks(model):
            out[hw] = name  # later blocks overwrite earlier ones
        return out

    s, t = deepest(student), deepest(teacher)
    pairs = []
    for s_hw, s_name in s.items():
        matches = [t_name for t_hw, t_name in t.items()
                   if blocks_match(student, teacher, s_hw, t_hw)]
        if matches:
            pairs.append((s_name, matches[-1]))  # the deepest teacher block of that stride
    if not pairs:
        raise UserError(_no_pairs_message(student, teacher))
    return pairs


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
        if blocks_match(student, teacher, s_blocks[s_name], t_blocks[t_name]):
            continue
        if cross_resolution(student, teacher):
            raise UserError(
                f"student.at_layers: {s_name!r} has stride {_stride(student, s_blocks[s_name])} "
                f"but {t_name!r} has stride {_stride(teacher, t_blocks[t_name])}; with inputs of "
                f"different sizes ({_hw(_input_hw(student))} and {_hw(_input_hw(teacher))}) "
                f"attention transfer pairs blocks of equal stride (input size / block size). "
                f"{_valid_hint(student, teacher)}")
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


def _stride(model, hw):
    """``"4"`` (or ``"4x2"``, ``"6.67"``): the block's stride (``axis_stride``), else the
    model's input size / the block's size."""
    text = []
    for i, b in zip(_input_hw(model), hw):
        st = axis_stride(i, b)
        text.append("global" if st == float("inf") else str(st) if st is not None
                    else "%g" % round(i / b, 2))
    return text[0] if text[0] == text[1] else "x".join(text)


def _valid_hint(student, teacher):
    pairs = valid_pairs(student, teacher)
    if not pairs:
        return _no_pairs_message(student, teacher)
    shown = ", ".join(f"[{s}, {t}]" for s, t in pairs[:12])
    more = f" (and {len(pairs) - 12} more)" if len(pairs) > 12 else ""
    return f"Valid pairs: {shown}{more}; or set student.at_pairing: auto."


def _no_pairs_message(student, teacher):
    if cross_resolution(student, teacher):
        s = sorted({_stride(student, hw) for _, hw in feature_blocks(student)}, key=_num)
        t = sorted({_stride(teacher, hw) for _, hw in feature_blocks(teacher)}, key=_num)
        return (f"student.at_layers: no student block has the stride of a teacher block "
                f"(inputs {_hw(_input_hw(student))} and {_hw(_input_hw(teacher))}; student "
                f"strides: {', '.join(s)}; teacher strides: {', '.join(t)}), so attention "
                "transfer cannot pair them; use a mode without 'at' (KD works across any "
                "architectures and resolutions).")
    s = sorted({_hw(hw) for _, hw in feature_blocks(student)})
    t = sorted({_hw(hw) for _, hw in feature_blocks(teacher)})
    return (f"student.at_layers: no student block has the spatial size of a teacher block (student: {', '.join(s)}; "
            f"teacher: {', '.join(t)}), so attention transfer cannot pair them; use a mode "
            "without 'at' (KD works across any architectures).")


def _num(stride_text):
    first = stride_text.split("x")[0]
    return float("inf") if first == "global" else float(first)
