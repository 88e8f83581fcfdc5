"""The Keras layer the TFLite rebuild adds: `ConstantOperand`, x + c or x * c for a constant c."""
from __future__ import annotations

import keras


@keras.saving.register_keras_serializable(package="causadv")
class ConstantOperand(keras.layers.Layer):
    """x + c or x * c for a constant c stored as a (non-trainable) weight; `op` is "add" or "mul"."""

    # the Keras config of a layer records its class's module, and the architecture fingerprint (and with it
    # every cache key) hashes that config: keep the module this class was defined in before zoo.tflite became
    # a package (``causadv_lib.zoo.tflite`` still exports it, so the recorded module imports it)
    __module__ = "causadv_lib.zoo.tflite"

    def __init__(self, op: str, value_shape, **kwargs):
        super().__init__(**kwargs)
        if op not in ("add", "mul"):
            raise ValueError(f"ConstantOperand: op must be 'add' or 'mul', got {op!r}")
        self.op, self.value_shape = op, tuple(int(s) for s in value_shape)

    def build(self, input_shape):
        self.value = self.add_weight(name="value", shape=self.value_shape, initializer="zeros", trainable=False)

    def call(self, x):
        return x + self.value if self.op == "add" else x * self.value

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {**super().get_config(), "op": self.op, "value_shape": list(self.value_shape)}
