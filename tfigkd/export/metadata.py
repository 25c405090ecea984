"""TFLite metadata for image classifiers, as MediaPipe Tasks' ``ImageClassifier`` reads it.

A ``.tflite`` carries metadata in its ``metadata`` list: an entry named
``TFLITE_METADATA`` points at a buffer holding a ``ModelMetadata`` flatbuffer
(schema: ``metadata_schema.fbs`` of TFLite Support, also shipped as
``mediapipe/tasks/metadata/metadata_schema.fbs``; file identifier ``M001``), and the files it names (here ``labels.txt``) are
appended to the ``.tflite`` as a zip archive.

We build that flatbuffer with the ``flatbuffers`` package (a TensorFlow
dependency) and the few tables an image classifier needs, instead of using a
metadata-writer library: ``tflite-support`` is unmaintained and does not
install beside TensorFlow 2.21, and MediaPipe's writer pins numpy < 2 and
protobuf < 5 (0.10.x) or fails to import (1.2.x). The field slots below are
those of ``metadata_schema.fbs`` 1.5.0 (fields are append-only there, so they
never move); a test reads our buffer back with MediaPipe's generated module
and runs MediaPipe's ``ImageClassifier`` on every phone export.
"""

from __future__ import annotations

import io
import zipfile

import flatbuffers
import numpy as np

from tfigkd.layout import LABELS_FILE  # noqa: F401  (the embedded labels file, as exported)

METADATA_NAME = "TFLITE_METADATA"
# Every field we write exists since schema 1.0.0: parsers of any version read it.
MIN_PARSER_VERSION = "1.0.0"

# Enum values from metadata_schema.fbs.
_ASSOCIATED_TENSOR_AXIS_LABELS = 2
_COLOR_SPACE = {"RGB": 1, "GRAYSCALE": 2}
_CONTENT_FEATURE, _CONTENT_IMAGE = 1, 2  # ContentProperties union members
_PROCESS_NORMALIZATION = 1  # ProcessUnitOptions union member


def _strings(b, values):
    return [b.CreateString(v) for v in values]


def _table(b, fields):
    """Ends a table with ``fields``: (slot, kind, value); kinds: off, u8, i8, u32, f32."""
    b.StartObject(max(s for s, _, _ in fields) + 1 if fields else 0)
    for slot, kind, value in fields:
        if value is None:
            continue
        if kind == "off":
            b.PrependUOffsetTRelativeSlot(slot, value, 0)
        elif kind == "u8":
            b.PrependUint8Slot(slot, value, 0)
        elif kind == "i8":
            b.PrependInt8Slot(slot, value, 0)
        elif kind == "u32":
            b.PrependUint32Slot(slot, value, 0)
    return b.EndObject()


def _vector(b, offsets):
    b.StartVector(4, len(offsets), 4)
    for off in reversed(offsets):
        b.PrependUOffsetTRelative(off)
    return b.EndVector()


def _float_vector(b, values):
    b.StartVector(4, len(values), 4)
    for v in reversed(values):
        b.PrependFloat32(float(v))
    return b.EndVector()


def classifier_metadata(name, description, labels_file, num_classes, width, height,
                        mean, std, input_min, input_max, color_space="RGB", version="",
                        author="tfigkd"):
    """The ``ModelMetadata`` flatbuffer of an image classifier.

    Args:
        name, description, version, author: Shown by metadata viewers.
        labels_file: Name of the associated label file (one class per line).
        num_classes: Length of the output vector.
        width, height: The input's size in pixels.
        mean, std: Per-channel input normalisation: the input tensor holds
            ``(pixel - mean) / std`` for float models; MediaPipe ignores it
            for uint8 inputs, which take pixels as they are.
        input_min, input_max: Range of the input tensor's values (``Stats``).
        color_space: "RGB" or "GRAYSCALE".

    Returns:
        The flatbuffer as bytes (file identifier ``M001``).
    """
    b = flatbuffers.Builder(1024)
    # Input tensor: image content, normalisation, value range.
    size = _table(b, [(0, "u32", int(width)), (1, "u32", int(height))])
    image = _table(b, [(0, "i8", _COLOR_SPACE[color_space]), (1, "off", size)])
    in_content = _table(b, [(0, "u8", _CONTENT_IMAGE), (1, "off", image)])
    norm = _table(b, [(0, "off", _float_vector(b, mean)), (1, "off", _float_vector(b, std))])
    unit = _table(b, [(0, "u8", _PROCESS_NORMALIZATION), (1, "off", norm)])
    units = _vector(b, [unit])
    in_stats = _table(b, [(0, "off", _float_vector(b, input_max)),
                          (1, "off", _float_vector(b, input_min))])
    in_name, in_desc = _strings(b, ["image", f"{width}x{height} {color_space} image, pixel "
                                              "values 0..255"])
    in_meta = _table(b, [(0, "off", in_name), (1, "off", in_desc), (3, "off", in_content),
                         (4, "off", units), (5, "off", in_stats)])
    # Output tensor: probabilities over the classes, labels by axis position.
    lab_name, lab_desc = _strings(b, [labels_file, "Class names, one per line, in output order."])
    labels = _table(b, [(0, "off", lab_name), (1, "off", lab_desc),
                        (2, "i8", _ASSOCIATED_TENSOR_AXIS_LABELS)])
    feature = _table(b, [])
    out_content = _table(b, [(0, "u8", _CONTENT_FEATURE), (1, "off", feature)])
    out_stats = _table(b, [(0, "off", _float_vector(b, [1.0])),
                           (1, "off", _float_vector(b, [0.0]))])
    out_name, out_desc = _strings(b, ["probability",
                                      f"Probabilities of the {num_classes} classes."])
    out_meta = _table(b, [(0, "off", out_name), (1, "off", out_desc), (3, "off", out_content),
                          (5, "off", out_stats), (6, "off", _vector(b, [labels]))])
    sub = _table(b, [(2, "off", _vector(b, [in_meta])), (3, "off", _vector(b, [out_meta]))])
    m_name, m_desc, m_ver, m_author, m_parser = _strings(
        b, [name, description, version, author, MIN_PARSER_VERSION])
    root = _table(b, [(0, "off", m_name), (1, "off", m_desc), (2, "off", m_ver),
                      (3, "off", _vector(b, [sub])), (4, "off", m_author),
                      (7, "off", m_parser)])
    b.Finish(root, file_identifier=b"M001")
    return bytes(b.Output())


def embed_metadata(model_bytes, metadata, files, input_quantization=None):
    """Returns ``model_bytes`` with ``metadata`` stored as TFLITE_METADATA and ``files`` zipped on.

    Args:
        model_bytes: The ``.tflite`` (without metadata).
        metadata: ``classifier_metadata(...)`` bytes.
        files: ``{name: bytes}`` associated files (the labels).
        input_quantization: Optional (scale, zero_point) to set on the input
            tensor (see ``pixel_input_quantization``).

    Returns:
        The new ``.tflite`` bytes.
    """
    from tensorflow.lite.python import schema_py_generated as schema

    model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(model_bytes, 0))
    if any(m.name in (METADATA_NAME, METADATA_NAME.encode()) for m in model.metadata or []):
        raise ValueError("the model already has TFLite metadata")
    buf = schema.BufferT()
    buf.data = np.frombuffer(metadata, np.uint8)
    model.buffers.append(buf)
    entry = schema.MetadataT()
    entry.name = METADATA_NAME
    entry.buffer = len(model.buffers) - 1
    model.metadata = (model.metadata or []) + [entry]
    if input_quantization is not None:
        sg = model.subgraphs[0]
        q = sg.tensors[sg.inputs[0]].quantization
        q.scale, q.zeroPoint = [float(input_quantization[0])], [int(input_quantization[1])]
    b = flatbuffers.Builder(len(model_bytes) + len(metadata) + 1024)
    b.Finish(model.Pack(b), file_identifier=b"TFL3")
    out = io.BytesIO()
    out.write(bytes(b.Output()))
    # Appending a zip to the flatbuffer: readers find the archive from its end
    # (central directory offsets count from the start of the file).
    with zipfile.ZipFile(out, "a", compression=zipfile.ZIP_STORED) as z:
        for name, data in files.items():
            # A fixed timestamp: the same model gives the same bytes (and sha256).
            z.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), data)
    return out.getvalue()


def pixel_input_quantization(model_bytes):
    """(1.0, 0) for a uint8 input that feeds straight into a QUANTIZE op, else None.

    MediaPipe copies camera pixels into a uint8 input as they are, so the
    tensor must mean "value = pixel" (scale 1, zero point 0). The converter
    calibrates the input range from the representative images instead (e.g.
    0..250), but with ``inference_input_type=uint8`` its first op is a QUANTIZE
    (uint8 -> int8) that re-scales to the calibrated int8 range at run time,
    so declaring scale 1 / zero point 0 on the uint8 tensor is exact.
    """
    from tensorflow.lite.python import schema_py_generated as schema

    m = schema.Model.GetRootAs(model_bytes, 0)
    sg = m.Subgraphs(0)
    idx = sg.Inputs(0)
    if sg.Tensors(idx).Type() != schema.TensorType.UINT8:
        return None
    users = [sg.Operators(k) for k in range(sg.OperatorsLength())
             if idx in [sg.Operators(k).Inputs(j) for j in range(sg.Operators(k).InputsLength())]]
    codes = [m.OperatorCodes(op.OpcodeIndex()) for op in users]
    codes = [max(c.BuiltinCode(), c.DeprecatedBuiltinCode()) for c in codes]
    if len(users) == 1 and codes[0] == schema.BuiltinOperator.QUANTIZE:
        return 1.0, 0
    return None


def read_metadata_summary(model_bytes):
    """Name of the metadata buffer entries and the zipped file names of a ``.tflite``.

    Returns:
        ``{"metadata": [names], "files": [names]}``.
    """
    from tensorflow.lite.python import schema_py_generated as schema

    m = schema.Model.GetRootAs(model_bytes, 0)
    names = [m.Metadata(i).Name().decode() for i in range(m.MetadataLength())]
    try:
        with zipfile.ZipFile(io.BytesIO(model_bytes)) as z:
            files = z.namelist()
    except zipfile.BadZipFile:
        files = []
    return {"metadata": names, "files": files}
