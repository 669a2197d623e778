"""Each reference experiment builds the notebook's network, layer by layer, with the notebook's training
recipe (README: "The reference experiments against their notebooks")."""

from __future__ import annotations

import numpy as np

from hepad_cli.data.samples import TrainingSet
from hepad_cli.experiment import instantiate_node
from tests.conftest import compose_config

#: A notebook's activation that is not recorded: the layer's type and size are compared, not its activation.
UNRECORDED = "unrecorded"


def layer_list(model) -> list[tuple]:
    """(type, size, kernel, strides, activation, bias) of every computing layer, nested models flattened."""
    import keras

    rows = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            rows += layer_list(layer)
            continue
        kind, config = type(layer).__name__, layer.get_config()
        if kind == "InputLayer":
            continue
        if kind == "Dense":
            rows.append((kind, config["units"], config["activation"], config["use_bias"]))
        elif kind in ("Conv2D", "Conv2DTranspose"):
            size = (config["filters"], *config["kernel_size"], *config["strides"])
            rows.append((kind, size, config["activation"]))
        elif kind == "Dropout":
            rows.append((kind, config["rate"]))
        else:
            rows.append((kind,))
    return rows


def assert_layers(model, notebook: list[tuple]) -> None:
    built = layer_list(model)
    assert len(built) == len(notebook), built
    for got, wanted in zip(built, notebook, strict=True):
        assert len(got) == len(wanted), (got, wanted)
        for value, expected in zip(got, wanted, strict=True):
            assert expected == UNRECORDED or value == expected, (got, wanted)


def experiment(name: str):
    return compose_config(f"experiment={name}")


def test_toptag_conv_ae_is_the_notebook_network():
    cfg = experiment("toptag_conv_ae")
    model, _ = instantiate_node(cfg.model).build((16, 16, 1))
    assert_layers(
        model,
        [
            ("Conv2D", (128, 3, 3, 2, 2), "relu"),
            ("Conv2D", (128, 3, 3, 2, 2), "relu"),
            ("Flatten",),
            ("Dense", 2, "linear", True),
            ("Dense", 4 * 4 * 128, UNRECORDED, True),
            ("Reshape",),
            ("Conv2DTranspose", (128, 3, 3, 2, 2), UNRECORDED),
            ("Conv2DTranspose", (1, 3, 3, 2, 2), "linear"),
            ("Reshape",),
            ("Softmax",),  # over the 256 pixels
            ("Reshape",),
        ],
    )
    assert (cfg.data.image.size, cfg.data.image.radius, cfg.data.image.normalise) == (16, 0.8, True)
    trainer = cfg.trainer
    recipe = (trainer.optimizer, trainer.learning_rate, trainer.epsilon, trainer.batch_size)
    assert recipe == ("adam", 0.001, 1e-7, 32)


def test_hls4ml_vae_is_the_notebook_network():
    cfg = experiment("hls4ml_vae")
    networks = instantiate_node(cfg.model).build_networks((16,))
    assert_layers(
        networks["encoder"],
        [
            ("Flatten",),
            ("Dense", 10, "elu", True),
            ("Dense", 5, "linear", True),
            ("Dense", 5, "linear", True),
        ],
    )
    assert [layer.name for layer in networks["encoder"].layers[-2:]] == ["latent_mu", "latent_log_var"]
    assert_layers(
        networks["decoder"], [("Dense", 10, "elu", True), ("Dense", 16, "linear", True), ("Reshape",)]
    )
    assert (cfg.model.reconstruction, cfg.model.beta) == ("sum", 1.0)
    assert (cfg.trainer.epochs, cfg.trainer.batch_size) == (200, 128)
    assert (cfg.trainer.early_stopping_patience, cfg.trainer.reduce_lr_patience) == (10, 2)
    assert cfg.trainer.reduce_lr_factor == 0.1
    assert cfg.data.scaling == "standard"


def test_adc2021_dense_ae_is_the_notebook_network():
    cfg = experiment("adc2021_dense_ae")
    model, _ = instantiate_node(cfg.model).build((57,))
    # Flatten -> Dense(8) -> ReLU -> Dense(57) -> ReLU: ReLU on the latent and on the output.
    assert_layers(
        model, [("Flatten",), ("Dense", 8, "relu", True), ("Dense", 57, "relu", True), ("Reshape",)]
    )
    assert (cfg.trainer.optimizer, cfg.trainer.batch_size, cfg.trainer.epochs) == ("adam", 1024, 10)
    assert cfg.data.scaling is None


def test_cms_dqm_fuzzy_and_is_the_notebook_network():
    cfg = experiment("cms_dqm_fuzzy_and")
    detector = instantiate_node(cfg.model)
    channels = {"muons": [0, 1, 2], "photons": [3, 4], "PF": [5, 6, 7, 8], "calo": [9]}
    rng = np.random.default_rng(0)
    detector.prepare(TrainingSet(rng.normal(size=(20, 10)), np.ones(20), column_groups=channels))
    networks = detector.build_networks((10,))
    assert len(networks) == 4
    for network in networks.values():
        assert_layers(
            network,
            [
                ("Dense", 150, "sigmoid", True),
                ("Dropout", 0.25),
                ("Dense", 50, "sigmoid", True),
                ("Dropout", 0.25),
                ("Dense", 10, "sigmoid", True),
                ("Dropout", 0.25),
                ("Dense", 1, "linear", True),  # the logit; f_i = sigmoid of it
            ],
        )
    assert (cfg.model.combination, cfg.model.l2) == ("notebook", 1e-5)
    assert (cfg.trainer.optimizer, cfg.trainer.learning_rate) == ("adadelta", 1.0)
    assert (cfg.trainer.batch_size, cfg.trainer.epochs) == (512, 1024)
