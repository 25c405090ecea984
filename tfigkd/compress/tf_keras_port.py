"""A ``tf_keras`` copy of a Keras 3 functional model, with the same weights.

tensorflow-model-optimization (QAT, pruning) only accepts ``tf_keras``
Sequential/Functional models. Rather than keep a second hand-written copy of
every architecture, this walks the Keras 3 graph layer by layer, builds the
same layer from ``tf_keras.layers`` (same name, same hyper-parameters), and
moves the weights with ``get_weights``/``set_weights``.

``Identity`` layers (the stable ``features_{i}`` names) are dropped: they
compute nothing, and TFMOT has no quantisation rule for them.
"""

from __future__ import annotations

import inspect

import numpy as np

from tfigkd.errors import UserError

# Layer classes known to exist in both Keras 3 and tf_keras with the same
# constructor arguments (minus initialisers, which do not matter: weights are copied).
SUPPORTED = ("Conv2D", "DepthwiseConv2D", "BatchNormalization", "ReLU", "Add", "Dense",
             "Dropout", "GlobalAveragePooling2D", "Activation", "Flatten", "MaxPooling2D",
             "AveragePooling2D", "ZeroPadding2D", "Reshape", "Concatenate", "Multiply")
PASS_THROUGH = ("Identity",)
_DROP = ("_initializer", "_regularizer", "_constraint")


class UnsupportedLayerError(UserError):
    """A layer has no tf_keras counterpart here."""


def _tf_keras_layer(layer):
    import tf_keras

    cls_name = type(layer).__name__
    cls = getattr(tf_keras.layers, cls_name)
    accepted = set(inspect.signature(cls.__init__).parameters) | {"name", "trainable"}
    cfg = {k: v for k, v in layer.get_config().items()
           if k in accepted and not k.endswith(_DROP) and k != "dtype"}
    return cls(**cfg)


def to_tf_keras(model):
    """Builds the ``tf_keras`` twin of a Keras 3 functional model.

    Args:
        model: A built functional ``keras.Model`` with a single input.

    Returns:
        A ``tf_keras.Model`` computing the same function (same layer names
        and weights; inference outputs agree to float rounding).

    Raises:
        UnsupportedLayerError: Naming the layer and its class when a layer
            cannot be ported (nested models, custom layers, ...).
    """
    import tf_keras

    if len(model.inputs) != 1:
        raise UnsupportedLayerError("Only single-input models can be ported to tf_keras.")
    tensors = {}
    new_layers = {}
    for layer in model.layers:
        cls_name = type(layer).__name__
        node = layer._inbound_nodes[0]
        outs = node.output_tensors
        if cls_name == "InputLayer":
            tensors[id(outs[0])] = tf_keras.Input(shape=tuple(model.input_shape[1:]),
                                                  name=layer.name)
            continue
        ins = [tensors[id(t)] for t in node.input_tensors]
        if cls_name in PASS_THROUGH:
            tensors[id(outs[0])] = ins[0]
            continue
        if cls_name not in SUPPORTED:
            raise UnsupportedLayerError(
                f"Layer {layer.name!r} ({cls_name}) has no tf_keras counterpart in "
                f"tfigkd.compress; supported: {', '.join(SUPPORTED)}. QAT/pruning need "
                "a plain functional model of these layers.")
        new = _tf_keras_layer(layer)
        out = new(ins if len(ins) > 1 else ins[0])
        new_layers[layer.name] = (layer, new)
        tensors[id(outs[0])] = out
    twin = tf_keras.Model(tensors[id(model.inputs[0])], tensors[id(model.outputs[0])],
                          name=model.name)
    copy_weights(model, twin)
    return twin


def copy_weights(src, dst):
    """Copies weights layer by layer (matched by name) from ``src`` to ``dst``.

    Layers of ``dst`` that hold weights must all exist in ``src`` with the
    same weight shapes; it raises ``ValueError`` naming the first mismatch.
    """
    src_layers = {layer.name: layer for layer in src.layers}
    for layer in dst.layers:
        weights = layer.get_weights()
        if not weights:
            continue
        if layer.name not in src_layers:
            raise UserError(f"Layer {layer.name!r} of the target model is not in the source.")
        values = src_layers[layer.name].get_weights()
        if [w.shape for w in weights] != [np.shape(v) for v in values]:
            raise UserError(f"Weight shapes of layer {layer.name!r} differ: "
                            f"{[w.shape for w in weights]} vs {[np.shape(v) for v in values]}.")
        layer.set_weights(values)
