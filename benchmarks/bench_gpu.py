"""Training throughput on whatever accelerator the active Keras backend sees (the CPU where there is none).

For the conv AE (16×16 jet images) and the dense AE (57 → 8 → 57), at several batch sizes, two sides in
the same process: hepad's detector ``fit`` (the full trainer: callbacks, progress bookkeeping, validation
on 1 % of the events, device-resident data where the trainer chooses it), and a plain loop of the same
Keras network in the backend's own framework with the training data already on the device, shuffled
there, no callbacks and no validation: the practical limit. Throughput = events per second of training,
median over the epochs after the first (which includes compilation). Both sides train the same network
with the same loss and optimiser; the final training losses are recorded to show it.
"""

from __future__ import annotations

import os
import statistics
import time

import numpy as np
from bench_common import Figure, Settings, Side, fmt_rate

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

#: (model, batch size, precision, trainer.steps_per_execution, trainer.device_resident) configurations.
CONFIGS = (
    ("conv_ae", 128, "float32", 1, "auto"),
    ("conv_ae", 1024, "float32", 1, "auto"),
    ("conv_ae", 4096, "float32", 1, "false"),
    ("conv_ae", 4096, "float32", 1, "auto"),
    ("conv_ae", 4096, "float32", 16, "auto"),
    ("conv_ae", 16384, "mixed_bfloat16", 1, "auto"),
    ("conv_ae", 16384, "mixed_bfloat16", 16, "auto"),
    ("dense_ae", 128, "float32", 1, "auto"),
    ("dense_ae", 1024, "float32", 1, "auto"),
    ("dense_ae", 4096, "float32", 1, "auto"),
    ("dense_ae", 4096, "float32", 16, "auto"),
)
SMOKE_CONFIGS = (("conv_ae", 128, "float32", 1, "auto"), ("dense_ae", 256, "float32", 4, "false"))
LEARNING_RATE = 1e-3


def device_description() -> dict:
    import keras

    from hepad_cli.models.training import accelerator_memory_bytes, accelerators

    found = accelerators()
    return {
        "keras_backend": keras.backend.backend(),
        "accelerators": found,
        "accelerator_memory_bytes": accelerator_memory_bytes() if found else None,
        "note": None if found else "no accelerator: both sides ran on the CPU",
    }


def events(model: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """Normalised random 16×16 images (conv AE) or standardised 57-feature events (dense AE), float32."""
    if model == "conv_ae":
        images = rng.dirichlet(np.full(256, 0.05), n).astype(np.float32)
        return images.reshape(n, 16, 16, 1)
    return rng.standard_normal((n, 57)).astype(np.float32)


def detector(
    model: str, batch: int, precision: str, epochs: int, steps_per_execution: int = 1, resident: str = "auto"
):
    from hepad_cli.models.conv_ae import ConvAutoencoder
    from hepad_cli.models.dense_ae import DenseAutoencoder

    trainer = {
        "epochs": epochs,
        "batch_size": batch,
        "learning_rate": LEARNING_RATE,
        "early_stopping_patience": 0,
        "reduce_lr_patience": 0,
        "progress_bar": False,
        "precision": precision,
        "steps_per_execution": steps_per_execution,
        "device_resident": resident,
    }
    if model == "conv_ae":
        return ConvAutoencoder(latent_dim=2, trainer=trainer, seed=0)
    return DenseAutoencoder(latent_dim=8, trainer=trainer, seed=0)


def hepad_side(
    model: str, x: np.ndarray, batch: int, precision: str, epochs: int, steps: int, resident: str
) -> dict:
    import keras

    n_val = max(len(x) // 100, 1)
    fitted = detector(model, batch, precision, epochs, steps, resident).fit(x[n_val:], x[:n_val])
    seconds = fitted.history_["epoch_seconds"]
    result = {
        "epoch_seconds": seconds,
        "events_per_epoch": len(x) - n_val,
        "events_per_s": (len(x) - n_val) / statistics.median(seconds[1:]),
        "final_loss": fitted.history_["loss"][-1],
        "device_resident": fitted.device_resident_,
    }
    keras.backend.clear_session(free_memory=True)
    return result


def plain_side(model: str, x: np.ndarray, batch: int, precision: str, epochs: int) -> dict:
    """The same network, trained by a bare loop of the active backend with the data on the device."""
    import keras

    previous = keras.mixed_precision.dtype_policy()
    keras.mixed_precision.set_dtype_policy(precision)
    try:
        keras.utils.set_random_seed(0)
        network, _ = detector(model, batch, precision, epochs).build(x.shape[1:])
        loop = {"jax": _jax_loop, "torch": _torch_loop, "tensorflow": _tensorflow_loop}[
            keras.backend.backend()
        ]
        seconds, loss = loop(network, x, batch, epochs)
    finally:
        keras.mixed_precision.set_dtype_policy(previous)
        keras.backend.clear_session(free_memory=True)
    return {
        "epoch_seconds": seconds,
        "events_per_s": len(x) / statistics.median(seconds[1:]),
        "final_loss": loss,
    }


def _jax_loop(network, x: np.ndarray, batch: int, epochs: int) -> tuple[list[float], float]:
    import jax
    import jax.numpy as jnp
    import keras

    optimizer = keras.optimizers.Adam(LEARNING_RATE)
    optimizer.build(network.trainable_variables)
    trainable = [v.value for v in network.trainable_variables]
    fixed = [v.value for v in network.non_trainable_variables]
    slots = [v.value for v in optimizer.variables]

    def loss_of(trainable, fixed, xb):
        output, fixed = network.stateless_call(trainable, fixed, xb, training=True)
        return jnp.mean(jnp.square(output.astype(jnp.float32) - xb)), fixed

    @jax.jit
    def step(trainable, fixed, slots, data, rows):
        xb = jnp.take(data, rows, axis=0)
        (loss, fixed), grads = jax.value_and_grad(loss_of, has_aux=True)(trainable, fixed, xb)
        trainable, slots = optimizer.stateless_apply(slots, grads, trainable)
        return trainable, fixed, slots, loss

    data = jax.device_put(x)
    key = jax.random.PRNGKey(0)
    seconds, loss = [], None
    for _ in range(epochs):
        start = time.perf_counter()
        key, subkey = jax.random.split(key)
        order = jax.random.permutation(subkey, len(x))
        for first in range(0, len(x) - batch + 1, batch):
            trainable, fixed, slots, loss = step(trainable, fixed, slots, data, order[first : first + batch])
        loss.block_until_ready()
        seconds.append(time.perf_counter() - start)
    return seconds, float(loss)


def _torch_loop(network, x: np.ndarray, batch: int, epochs: int) -> tuple[list[float], float]:
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    parameters = [v.value for v in network.trainable_variables]
    optimizer = torch.optim.Adam(parameters, lr=LEARNING_RATE)
    data = torch.as_tensor(x, device=device)
    seconds, loss = [], None
    for _ in range(epochs):
        start = time.perf_counter()
        order = torch.randperm(len(x), device=device)
        for first in range(0, len(x) - batch + 1, batch):
            xb = data[order[first : first + batch]]
            loss = torch.mean(torch.square(network(xb, training=True).float() - xb))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        if device == "cuda":
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - start)
    return seconds, float(loss)


def _tensorflow_loop(network, x: np.ndarray, batch: int, epochs: int) -> tuple[list[float], float]:
    import keras
    import tensorflow as tf

    optimizer = keras.optimizers.Adam(LEARNING_RATE)

    @tf.function
    def step(xb):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(tf.cast(network(xb, training=True), tf.float32) - xb))
        gradients = tape.gradient(loss, network.trainable_variables)
        optimizer.apply(gradients, network.trainable_variables)
        return loss

    data = tf.constant(x)
    seconds, loss = [], None
    for _ in range(epochs):
        start = time.perf_counter()
        order = tf.random.shuffle(tf.range(len(x)))
        for first in range(0, len(x) - batch + 1, batch):
            loss = step(tf.gather(data, order[first : first + batch]))
        seconds.append(time.perf_counter() - start)
    return seconds, float(loss)


def figure_gpu(settings: Settings) -> list[Figure]:
    """One row per (model, batch, precision): hepad's fit against the plain device-resident loop."""
    device = device_description()
    rng = np.random.default_rng(0)
    configs = SMOKE_CONFIGS if settings.smoke else CONFIGS
    epochs = settings.size(4, 2)
    sizes = {"conv_ae": settings.size(262_144, 1024), "dense_ae": settings.size(1_048_576, 4096)}
    data = {model: events(model, sizes[model], rng) for model in sizes}
    figures = []
    plain_runs: dict[tuple, dict] = {}
    for model, batch, precision, steps, resident in configs:
        x = data[model]
        ours = hepad_side(model, x, batch, precision, epochs, steps, resident)
        if (model, batch, precision) not in plain_runs:
            plain_runs[model, batch, precision] = plain_side(model, x, batch, precision, epochs)
        plain = plain_runs[model, batch, precision]
        ratio = ours["events_per_s"] / plain["events_per_s"]
        name = (
            f"gpu_{model}_b{batch}"
            + ("" if precision == "float32" else "_bf16")
            + ("" if steps == 1 else f"_spe{steps}")
            + ("_host" if resident == "false" else "")
        )
        figures.append(
            Figure(
                name=name,
                what=f"{model} fit, batch {batch}, {precision}, steps_per_execution {steps}, "
                f"device_resident {resident}",
                baseline=Side(
                    "plain loop, data on the device", plain["epoch_seconds"][1:], per_sample=len(x)
                ),
                ours=Side("hepad fit", ours["epoch_seconds"][1:], per_sample=ours["events_per_epoch"]),
                ratio=ratio,
                target="≥ 0.5× the plain loop",
                met=ratio >= 0.5,
                baseline_text=fmt_rate(plain["events_per_s"], "ev"),
                ours_text=fmt_rate(ours["events_per_s"], "ev"),
                notes=[
                    f"{len(x)} events, {epochs} epochs (first excluded: compilation); device: "
                    + (", ".join(device["accelerators"]) or "CPU (no accelerator)")
                    + f"; backend {device['keras_backend']}; device-resident: {ours['device_resident']}",
                    f"final training loss: hepad {ours['final_loss']:.4g}, plain {plain['final_loss']:.4g}",
                ],
                extra={"device": device, "hepad": ours, "plain": plain},
            )
        )
    conv = [f for f in figures if f.name.startswith("gpu_conv_ae")]
    best = max(conv, key=lambda f: f.extra["hepad"]["events_per_s"])
    figures.append(
        Figure(
            name="gpu_conv_ae_best",
            what="conv AE fit at its best setting",
            baseline=None,
            ours=best.ours,
            ratio=None,
            target="≥ 1M jets/s",
            met=best.extra["hepad"]["events_per_s"] >= 1e6 if device["accelerators"] else None,
            baseline_text="—",
            ours_text=fmt_rate(best.extra["hepad"]["events_per_s"], "jets"),
            notes=[f"setting: {best.what}" + ("" if device["accelerators"] else "; no accelerator")],
            extra={"device": device},
        )
    )
    return figures
