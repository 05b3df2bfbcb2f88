"""The trained model, logged as an MLflow 3 model linked to its run (tracking.log_model): the
Keras model itself for `keras` (its module's optional `export(net)` verb returns it), and for
every other implementation a NumPy pyfunc holding the weights `get_weights()` returns
(bench/pyfunc_mlp.py). Both predict logits for rows of 784 floats scaled as the run's input,
so `mlflow.pyfunc.load_model(...).predict(x_test).argmax(1)` gives the run's predictions.npz.
Logged after training, outside every timed region."""

from __future__ import annotations

import json
import re
import tempfile
import warnings
from importlib.metadata import version
from pathlib import Path

import mlflow
import numpy as np
from mlflow.models import ModelSignature
from mlflow.types import Schema, TensorSpec

MODEL_NAME = "model"  # the run's artifact folder; the logged model is named by its run
CODE = Path(__file__).with_name("pyfunc_mlp.py")


def signature(job) -> ModelSignature:
    """Rows of 784 floats in, logits out, in the model's dtype (MLflow enforces a tensor's
    dtype exactly, casting neither way: `x / 255.0` is float64 and needs `.astype("float32")`,
    as the model's description says)."""
    dtype = np.dtype(job.model.dtype)
    sizes = job.model.sizes
    return ModelSignature(
        inputs=Schema([TensorSpec(dtype, (-1, sizes[0]))]),
        outputs=Schema([TensorSpec(dtype, (-1, sizes[-1]))]),
    )


def model_name(run_name: str) -> str:
    """The logged model's name: its run's, with the characters MLflow refuses in a model
    name (/ : . % " ') as "_" ("numpy-s0-lr=0.01" -> "numpy-s0-lr=0_01")."""
    return re.sub(r"[/:.%\"']", "_", run_name) or MODEL_NAME


def model_note(job, run_name: str) -> str:
    """The logged model's description: what trained it and how to load it."""
    kind = "a Keras model" if job.implementation == "keras" else "a NumPy pyfunc of its weights"
    return (
        f"**{run_name}**: the MLP {'-'.join(map(str, job.model.sizes))} ({job.model.activation}) "
        f"trained by **{job.implementation}**, seed {job.seed}, preset `{job.preset}`; {kind}. "
        '`mlflow.pyfunc.load_model("models:/<model id>").predict(x)` returns logits for rows '
        f"of 784 pixel values scaled to [0, 1] as {job.model.dtype} "
        f'(`(x / 255).astype("{job.model.dtype}")`); their argmax is the class.'
    )


def _requirements(*packages: str) -> list[str]:
    """Pinned requirements, given, not inferred: inference loads the model in a subprocess
    (seconds per job)."""
    return [f"{p}=={version(p)}" for p in packages]


def framework_model(job, net):
    """The framework's own model object, where the implementation's module exports one."""
    from bench.job.setup import job_implementation

    export = getattr(job_implementation(job).module, "export", None)
    return export(net) if export else None


def log_model(job, net, run_id: str, experiment_id: str, run_name: str, images=None) -> str:
    """Logs the job's trained model to the active run; returns its model id. MLflow's advice
    to give an input example (validating it would load the model again) stays out of the
    sweep's console: the signature is given."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", r".*(input example|input_example)", UserWarning)
        return _log_model(job, net, run_id, experiment_id, run_name, images)


def input_example(job, images):
    """Two test images as the model takes them (the shared preprocessing), shown on the
    model's page; None without images."""
    from bench.data.prepare import flatten_scale

    return None if images is None else flatten_scale(images[:2], job.model.dtype)


def _log_model(job, net, run_id: str, experiment_id: str, run_name: str, images) -> str:
    example = input_example(job, images)
    """The model, linked to the job's run by id (the run is written through a client, never
    as MLflow's active run, so an interrupted job cannot be closed FINISHED behind our back)."""
    params = {"implementation": job.implementation, "seed": job.seed, "preset": job.preset}
    model_id = mlflow.initialize_logged_model(
        name=model_name(run_name),
        source_run_id=run_id,
        experiment_id=experiment_id,
        params=params,
        tags={"mlflow.note.content": model_note(job, run_name)},
    ).model_id
    native = framework_model(job, net)
    if native is not None and type(native).__module__.startswith("keras"):
        info = mlflow.keras.log_model(
            native,
            name=MODEL_NAME,
            signature=signature(job),
            # no input example: mlflow.keras (3.17) writes it before the model's folder
            # exists (FileNotFoundError: .../model/input_example.json)
            pip_requirements=_requirements("keras", "tensorflow", "numpy"),
            model_id=model_id,
        )
        return info.model_id
    with tempfile.TemporaryDirectory() as tmp:
        weights, meta = Path(tmp) / "weights.npz", Path(tmp) / "meta.json"
        np.savez(weights, *[np.asarray(w) for w in net.get_weights()])
        meta.write_text(
            json.dumps(
                {
                    "activation": job.model.activation,
                    "sizes": list(job.model.sizes),
                    "dtype": str(job.model.dtype),
                    "trained_by": job.implementation,
                }
            )
        )
        info = mlflow.pyfunc.log_model(
            name=MODEL_NAME,
            python_model=str(CODE),
            artifacts={"weights": str(weights), "meta": str(meta)},
            signature=signature(job),
            input_example=example,
            pip_requirements=_requirements("mlflow", "numpy"),
            model_id=model_id,
        )
    return info.model_id
