"""The MLflow pyfunc model of an MLP trained by any implementation (numpy, tf_tape, jax, ...):
the weights `get_weights()` returned and the hidden activation, evaluated with NumPy. Logged as
a model from code (this file travels with the model), so loading it needs only mlflow and
numpy, not this project:

    model = mlflow.pyfunc.load_model("models:/<model id>")   # or runs:/<run id>/model
    logits = model.predict(x)   # x: (N, 784) floats scaled as the run's input; logits (N, 10)

bench.tracking.model logs it; never imported by the project itself.
"""

import json

import numpy as np
from mlflow.models import set_model
from mlflow.pyfunc import PythonModel


def sigmoid(z):
    return 0.5 * (np.tanh(0.5 * z) + 1.0)  # overflow-free, as implementations/numpy_scratch


ACTIVATIONS = {"relu": lambda z: np.maximum(z, 0), "sigmoid": sigmoid, "tanh": np.tanh}


class MLPLogits(PythonModel):
    """Dense layers [784, *hidden, 10]: the hidden activation after each but the last."""

    def load_context(self, context):
        with np.load(context.artifacts["weights"], allow_pickle=False) as f:
            self.weights = [f[f"arr_{i}"] for i in range(len(f.files))]
        with open(context.artifacts["meta"]) as f:
            meta = json.load(f)
        self.activation = ACTIVATIONS[meta["activation"]]

    def predict(self, context, model_input: np.ndarray, params=None):
        dtype = self.weights[0].dtype
        a = np.asarray(model_input, dtype=dtype).reshape(-1, self.weights[0].shape[0])
        layers = list(zip(self.weights[::2], self.weights[1::2]))
        for i, (w, b) in enumerate(layers):
            a = a @ w + b
            if i < len(layers) - 1:
                a = self.activation(a)
        return a


set_model(MLPLogits())
