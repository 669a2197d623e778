"""A dense detector as Level-1 trigger firmware: an hls4ml HLS project with the anomaly score computed on
chip, and hls4ml's bit-accurate C++ emulation of it (compiled with g++; no vendor tools).

What goes on chip. The detector's network becomes one flat chain x → Dense (+ activation) … → x̂, and the
score follows it in the same HLS function: Subtract(x̂, x) → Multiply(d, d) → Dense(1) with weights 1 and
no bias, i.e. Σᵢ (x̂ᵢ − xᵢ)². The chip outputs the sum: dividing by n would cost a multiplier and round,
and a trigger compares the sum with n × threshold, the same decision. The emulated output is divided
by n afterwards wherever the detector's score is the mean (``ScoreNetwork.score_factor``), so emulated
and float scores are in the same units.

Precision. ``precision`` (an ``ap_fixed<W,I>`` type) is every weight, bias, accumulator and result of the
network, as hls4ml's model-wide precision means; ``input_precision`` the inputs; ``layer_precision``
overrides single layers. The score layers keep hls4ml's ``auto`` widths by default: hls4ml sizes the
difference, square and sum so that they neither round nor overflow, so the loss against the float score
comes from the network alone; ``score_precision`` sets them (e.g. ``ap_ufixed<24,14,AP_RND,AP_SAT>``).
Activations other than (leaky) ReLU and linear are lookup tables in hls4ml (``table_size`` entries).

Supported: ``DenseAutoencoder`` and any ``KerasAutoencoder`` whose network is a chain of Dense layers (with
the activations, BatchNormalization and reshaping layers ``hepad_cli.export.dense_chain`` folds), and the
``VariationalAutoencoder`` with its reconstruction score computed at z = μ (the encoder's μ branch, then
the decoder). The VAE's KL score needs exp(log σ²), which hls4ml has no layer for.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import re
import secrets
import shutil
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hepad_cli.errors import ConfigError
from hepad_cli.io import atomic_write_text
from hepad_cli.validation import check_choice, check_int, check_number

log = logging.getLogger(__name__)

SUPPORTED_DETECTORS = (
    "dense autoencoders (model=dense_ae, dense_ae_notebook, dense_ae_challenge, or any KerasAutoencoder "
    "whose network is a chain of Dense layers) and the VAE with its reconstruction score (model=vae, "
    "model.scores starting with reconstruction)"
)
#: hls4ml project name: the top function of the HLS project and the prefix of its files.
PROJECT_NAME = "anomaly_detector"
INPUT_LAYER = "event"
SCORE_LAYERS = ("score_difference", "score_square", "score_sum")
#: The types of a layer that ``layer_precision`` may set.
TYPE_KEYS = ("result", "weight", "bias", "accum", "table")
#: The activations hls4ml implements (Keras names); a network with any other is refused.
FIRMWARE_ACTIVATIONS = ("linear", "relu", "leaky_relu", "elu", "selu", "tanh", "sigmoid", "softplus")
BACKENDS = ("Vitis", "Vivado")
STRATEGIES = ("latency", "resource")
#: Events per call of the emulation (a progress step; hls4ml itself runs one event per C call).
EMULATION_CHUNK = 4096

_QUANTISATION = (
    "AP_RND",
    "AP_RND_ZERO",
    "AP_RND_MIN_INF",
    "AP_RND_INF",
    "AP_RND_CONV",
    "AP_TRN",
    "AP_TRN_ZERO",
)
_OVERFLOW = ("AP_SAT", "AP_SAT_ZERO", "AP_SAT_SYM", "AP_WRAP", "AP_WRAP_SM")
_FIXED = re.compile(
    r"^ap_(?P<unsigned>u?)fixed<\s*(?P<width>\d+)\s*,\s*(?P<integer>-?\d+)\s*"
    r"(?:,\s*(?P<quantisation>\w+)\s*)?(?:,\s*(?P<overflow>\w+)\s*)?>$"
)


class FirmwareError(ConfigError):
    """The detector or the settings cannot become firmware; the message says what would work."""


# ----------------------------------------------------------------------------------------------------
# Fixed-point types


@dataclass(frozen=True)
class FixedPoint:
    """An ``ap_fixed<W,I,Q,O>`` / ``ap_ufixed<…>`` type: W bits in all, I of them integer (sign included)."""

    width: int
    integer: int
    signed: bool = True
    quantisation: str = "AP_TRN"
    overflow: str = "AP_WRAP"

    @classmethod
    def parse(cls, text: object, key: str = "precision") -> FixedPoint:
        """Parse a type string; a malformed one raises FirmwareError naming ``key``, the value and the fix."""
        example = (
            "'ap_fixed<16,6>' (16 bits, 6 of them integer bits with the sign) or "
            "'ap_fixed<16,6,AP_RND,AP_SAT>'"
        )
        match = _FIXED.match(str(text).strip()) if isinstance(text, str) else None
        if match is None:
            raise FirmwareError(f"{key}={text!r} is not an ap_fixed type: write e.g. {example}")
        width, integer = int(match["width"]), int(match["integer"])
        quantisation = match["quantisation"] or "AP_TRN"
        overflow = match["overflow"] or "AP_WRAP"
        if not 1 <= width <= 128 or abs(integer) > 128:
            raise FirmwareError(
                f"{key}={text!r}: the width must be 1 to 128 bits, the integer bits -128 to 128"
            )
        if quantisation not in _QUANTISATION:
            raise FirmwareError(
                f"{key}={text!r}: rounding mode {quantisation!r} is not one of {list(_QUANTISATION)}"
            )
        if overflow not in _OVERFLOW:
            raise FirmwareError(f"{key}={text!r}: overflow mode {overflow!r} is not one of {list(_OVERFLOW)}")
        return cls(width, integer, not match["unsigned"], quantisation, overflow)

    def __str__(self) -> str:
        modes = (
            ""
            if (self.quantisation, self.overflow) == ("AP_TRN", "AP_WRAP")
            else f",{self.quantisation},{self.overflow}"
        )
        return f"ap_{'' if self.signed else 'u'}fixed<{self.width},{self.integer}{modes}>"

    @property
    def step(self) -> float:
        """The value of the least significant bit."""
        return 2.0 ** (self.integer - self.width)

    @property
    def lowest(self) -> float:
        return -(2.0 ** (self.integer - 1)) if self.signed else 0.0

    @property
    def highest(self) -> float:
        return (2.0 ** (self.integer - 1) if self.signed else 2.0**self.integer) - self.step

    @property
    def directory_name(self) -> str:
        """A file-system name: ap_fixed<16,6,AP_RND,AP_SAT> → ap_fixed_16_6_AP_RND_AP_SAT."""
        return re.sub(r"[^A-Za-z0-9]+", "_", str(self)).strip("_").replace("__", "_")


# ----------------------------------------------------------------------------------------------------
# The network that goes on chip


@dataclass
class ScoreNetwork:
    """A detector as firmware sees it: dense layers x → x̂ and the squared error reduced by sum or mean.

    ``chain``: (weights (n_in, n_out), bias (n_out,), Keras activation name) per Dense layer, as
    ``hepad_cli.export.dense_chain`` returns it. ``reconstruction_model``: the detector's float Keras
    model x → x̂ (for the NumPy scorer and the float reference). The detector's score equals
    ``score_factor`` × Σ (x̂ − x)².
    """

    detector: str
    score_name: str
    chain: list[tuple[np.ndarray, np.ndarray, str]]
    reduction: str
    reconstruction_model: object = field(repr=False)

    @property
    def n_features(self) -> int:
        return int(self.chain[0][0].shape[0])

    @property
    def score_factor(self) -> float:
        return 1.0 / self.n_features if self.reduction == "mean" else 1.0

    def layer_names(self) -> list[str]:
        """Names of the firmware's layers in order: input, each Dense and its activation, the score."""
        names = [INPUT_LAYER]
        for i, (_, _, activation) in enumerate(self.chain):
            names.append(f"dense_{i}")
            if activation != "linear":
                names.append(f"dense_{i}_{_activation_kind(activation)}")
        return [*names, *SCORE_LAYERS]


def _activation_kind(activation: str) -> str:
    return activation.split(":", 1)[0]


def score_network(detector) -> ScoreNetwork:
    """The detector's network as firmware computes it; an unsupported detector raises FirmwareError."""
    from hepad_cli.export import ExportError, dense_chain
    from hepad_cli.models.autoencoder import KerasAutoencoder
    from hepad_cli.models.vae import VariationalAutoencoder

    kind = type(detector).__name__
    if isinstance(detector, VariationalAutoencoder):
        if detector.scores[0] != "reconstruction":
            raise FirmwareError(
                f"this VAE's primary score is {detector.scores[0]!r}: its KL term needs exp(log σ²), which "
                "hls4ml has no layer for. Export a VAE trained with model.scores=[reconstruction,...] "
                f"(its reconstruction error at z = μ goes on chip). Supported: {SUPPORTED_DETECTORS}"
            )
        model = _vae_mean_path(detector)
        reduction = detector.reconstruction
    elif isinstance(detector, KerasAutoencoder):
        model = detector.model_
        reduction = "mean"
    else:
        raise FirmwareError(
            f"{kind} cannot be exported to firmware: it is not a network of dense layers. "
            f"Supported: {SUPPORTED_DETECTORS}"
        )
    try:
        chain = dense_chain(model)
    except ExportError as error:
        raise FirmwareError(
            f"{kind} cannot be exported to firmware: {error}. Supported: {SUPPORTED_DETECTORS}"
        ) from None
    if chain[-1][0].shape[1] != chain[0][0].shape[0]:
        raise FirmwareError(
            f"{kind}: the network maps {chain[0][0].shape[0]} features to {chain[-1][0].shape[1]}: "
            "not an autoencoder, so there is no reconstruction error to score"
        )
    return ScoreNetwork(kind, detector.score_name, chain, reduction, model)


def _vae_mean_path(detector):
    """x → encoder up to μ → decoder, as one Keras model sharing the VAE's layers (the score at z = μ)."""
    import keras
    from keras import layers

    encoder_dense = [
        layer
        for layer in detector.encoder_.layers
        if isinstance(layer, layers.Dense) and layer.name != "latent_log_var"
    ]
    decoder_dense = [layer for layer in detector.decoder_.layers if isinstance(layer, layers.Dense)]
    inputs = keras.Input(detector.event_shape_)
    x = layers.Flatten()(inputs)
    for layer in encoder_dense + decoder_dense:
        x = layer(x)
    return keras.Model(inputs, layers.Reshape(detector.event_shape_)(x), name="vae_mean_path")


def firmware_keras_model(network: ScoreNetwork):
    """The flat Keras model hls4ml converts: the dense chain, then Σ (x̂ − x)² in three layers."""
    import keras
    from keras import layers

    inputs = keras.Input((network.n_features,), name=INPUT_LAYER)
    x = inputs
    for i, (weights, bias, activation) in enumerate(network.chain):
        dense = layers.Dense(weights.shape[1], use_bias=bool(np.any(bias)), name=f"dense_{i}")
        x = dense(x)
        dense.set_weights([weights, bias] if dense.use_bias else [weights])
        if activation != "linear":
            x = _activation_layer(activation, f"dense_{i}_{_activation_kind(activation)}")(x)
    difference = layers.Subtract(name="score_difference")([x, inputs])
    square = layers.Multiply(name="score_square")([difference, difference])
    total = layers.Dense(1, use_bias=False, kernel_initializer="ones", name="score_sum")(square)
    return keras.Model(inputs, total, name=PROJECT_NAME)


def _activation_layer(activation: str, name: str):
    from keras import layers

    kind, _, parameter = activation.partition(":")
    if kind not in FIRMWARE_ACTIVATIONS:
        raise FirmwareError(
            f"activation {kind!r} has no hls4ml implementation; "
            f"firmware supports {list(FIRMWARE_ACTIVATIONS)}"
        )
    if kind == "leaky_relu":
        return layers.LeakyReLU(negative_slope=float(parameter or 0.2), name=name)
    if kind == "elu" and parameter:
        return layers.ELU(alpha=float(parameter), name=name)
    return layers.Activation(kind, name=name)


# ----------------------------------------------------------------------------------------------------
# Settings


@dataclass
class FirmwareSettings:
    """How the HLS project is generated; every value is checked here, before any work."""

    precision: str = "ap_fixed<16,6>"
    input_precision: str | None = None
    score_precision: str = "auto"
    layer_precision: dict = field(default_factory=dict)
    reuse_factor: int = 1
    strategy: str = "latency"
    backend: str = "Vitis"
    part: str = "xcvu9p-flga2104-2L-e"
    clock_period: float = 5.0
    table_size: int = 1024

    def __post_init__(self) -> None:
        self.network_type = FixedPoint.parse(self.precision)
        self.input_type = FixedPoint.parse(
            self.input_precision if self.input_precision is not None else self.precision, "input_precision"
        )
        self.score_type = (
            None
            if self.score_precision == "auto"
            else FixedPoint.parse(self.score_precision, "score_precision")
        )
        if not isinstance(self.layer_precision, dict):
            raise FirmwareError(
                "layer_precision must map layer names to types, e.g. "
                f"+layer_precision.dense_0='ap_fixed<18,8>', got {self.layer_precision!r}"
            )
        self.layer_types = {name: _layer_types(name, value) for name, value in self.layer_precision.items()}
        check_int("reuse_factor", self.reuse_factor, hint="1 = fully parallel", error=FirmwareError)
        check_choice("strategy", self.strategy, STRATEGIES, error=FirmwareError)
        check_choice("backend", self.backend, BACKENDS, error=FirmwareError)
        check_number("clock_period", self.clock_period, low=0, low_open=True, hint="ns", error=FirmwareError)
        check_int("table_size", self.table_size, minimum=2, error=FirmwareError)

    def check_layer_names(self, network: ScoreNetwork) -> None:
        layers = network.layer_names()[1 : -len(SCORE_LAYERS)]
        unknown = sorted(set(self.layer_types) - set(layers))
        if unknown:
            raise FirmwareError(
                f"layer_precision names layers it cannot set: {unknown}; the network's layers are {layers} "
                "(the inputs' type is input_precision, the score's score_precision)"
            )

    def with_precision(self, precision: str) -> FirmwareSettings:
        values = {name: getattr(self, name) for name in self.__dataclass_fields__}
        return FirmwareSettings(**(values | {"precision": precision}))

    def result_type(self, layer: str) -> FixedPoint | None:
        """The type a layer's outputs are stored in (None: hls4ml infers it)."""
        if layer in self.layer_types and "result" in self.layer_types[layer]:
            return self.layer_types[layer]["result"]
        if layer == INPUT_LAYER:
            return self.input_type
        if layer in SCORE_LAYERS:
            return self.score_type
        return self.network_type


def _layer_types(name: str, value: object) -> dict[str, FixedPoint]:
    if isinstance(value, str):
        return {
            key: FixedPoint.parse(value, f"layer_precision.{name}") for key in TYPE_KEYS if key != "table"
        }
    if isinstance(value, dict) and value and set(value) <= set(TYPE_KEYS):
        return {key: FixedPoint.parse(text, f"layer_precision.{name}.{key}") for key, text in value.items()}
    raise FirmwareError(
        f"layer_precision.{name}={value!r}: give one type for all of the layer's values, or a mapping of "
        f"{list(TYPE_KEYS)} to types"
    )


def hls_config(model, network: ScoreNetwork, settings: FirmwareSettings) -> dict:
    """hls4ml's per-layer configuration for the Keras model of ``firmware_keras_model``."""
    import hls4ml

    network_type = str(settings.network_type)
    with _quiet():
        config = hls4ml.utils.config_from_keras_model(
            model, granularity="name", default_precision=network_type, backend=settings.backend
        )
    config["Model"].update(ReuseFactor=settings.reuse_factor, Strategy=settings.strategy.capitalize())
    for name, layer in config["LayerName"].items():
        precision = layer.setdefault("Precision", {})
        if "ReuseFactor" in layer:
            layer["ReuseFactor"] = settings.reuse_factor
        if "TableSize" in layer:
            layer["TableSize"] = settings.table_size
        for key in list(precision):
            if key == "table":
                continue
            if name == INPUT_LAYER:
                precision[key] = str(settings.input_type)
            elif name in SCORE_LAYERS:
                # The sum's weights are 1: a one-bit unsigned integer holds them exactly at any precision.
                if key in ("weight", "bias"):
                    precision[key] = "ap_uint<1>"
                elif settings.score_type is not None:
                    precision[key] = str(settings.score_type)
            else:
                precision[key] = network_type
        overrides = settings.layer_types.get(name, {})
        missing = sorted(set(overrides) - set(precision))
        if missing and not isinstance(settings.layer_precision[name], str):
            raise FirmwareError(
                f"layer_precision.{name} sets {missing}, which layer {name} does not have; "
                f"its types are {sorted(precision)}"
            )
        for key in set(overrides) & set(precision):
            precision[key] = str(overrides[key])
    return config


def check_firmware(network: ScoreNetwork, settings: FirmwareSettings) -> None:
    """Raise FirmwareError for anything that would stop the project being generated (no file written)."""
    settings.check_layer_names(network)
    hls_config(firmware_keras_model(network), network, settings)


# ----------------------------------------------------------------------------------------------------
# The HLS project and its emulation


@dataclass
class FirmwareProject:
    """An HLS project on disk; with ``emulator`` set, its compiled C++ emulation is loaded and scores."""

    directory: Path
    settings: FirmwareSettings
    network: ScoreNetwork
    layers: list[dict]
    warnings: list[str]
    emulator: object = field(default=None, repr=False)
    compile_seconds: float | None = None

    def score(self, events: np.ndarray, progress: bool = False) -> np.ndarray:
        """Emulated firmware scores of (n, ...) events, in the detector's units (float64)."""
        if self.emulator is None:
            raise RuntimeError("the project was written without compiling its emulation")
        flat = np.ascontiguousarray(np.asarray(events, dtype=np.float32).reshape(len(events), -1))
        scores = np.empty(len(flat))
        chunks = range(0, len(flat), EMULATION_CHUNK)
        if progress:
            from tqdm import tqdm

            chunks = tqdm(chunks, desc=f"emulating {self.settings.network_type}", unit="chunk", leave=False)
        for start in chunks:
            batch = flat[start : start + EMULATION_CHUNK]
            scores[start : start + len(batch)] = np.asarray(self.emulator.predict(batch), np.float64).reshape(
                -1
            )
        return scores * self.network.score_factor


@contextlib.contextmanager
def firmware_project(
    network: ScoreNetwork, settings: FirmwareSettings, directory: Path, emulate: bool
) -> Iterator[FirmwareProject]:
    """Generate the HLS project for ``directory`` (and compile its emulation if ``emulate``).

    The project is built under a temporary name beside ``directory``; the emulation runs there (the
    compiled library reads its weights from that path), and on leaving the block the library is
    deleted and the project renamed into place. An interrupted or failed export leaves no project.
    """
    import hls4ml

    settings.check_layer_names(network)
    if emulate and shutil.which("g++") is None:
        raise FirmwareError(
            "emulate=true compiles hls4ml's C++ emulation with g++, which is not on PATH: install it "
            "(e.g. apt-get install g++) or export with emulate=false"
        )
    directory = Path(directory)
    if directory.exists():
        raise FileExistsError(f"{directory} exists already; an export never writes over earlier files")
    partial = directory.with_name(f".{directory.name}.partial-{secrets.token_hex(3)}")
    model = firmware_keras_model(network)
    config = hls_config(model, network, settings)
    output = io.StringIO()
    try:
        with _quiet(output):
            hls_model = hls4ml.converters.convert_from_keras_model(
                model,
                hls_config=config,
                output_dir=str(partial),
                project_name=PROJECT_NAME,
                backend=settings.backend,
                io_type="io_parallel",
                part=settings.part,
                clock_period=settings.clock_period,
            )
        compile_seconds = None
        try:
            with _quiet(output):
                if emulate:
                    start = time.perf_counter()
                    hls_model.compile()
                    compile_seconds = time.perf_counter() - start
                else:
                    hls_model.write()
        except Exception as error:
            raise FirmwareError(
                f"hls4ml could not {'compile' if emulate else 'write'} the project for "
                f"{settings.network_type}: {error}\n{output.getvalue()[-3000:]}"
            ) from None
        log.debug("hls4ml output for %s:\n%s", directory.name, output.getvalue())
        layers, warnings = _describe_layers(hls_model, settings)
        project = FirmwareProject(
            directory, settings, network, layers, warnings, hls_model if emulate else None, compile_seconds
        )
        yield project
        project.emulator = None
        for library in (partial / "firmware").glob(f"{PROJECT_NAME}-*.so"):
            library.unlink()  # built for the temporary path; build_lib.sh rebuilds it in place
        _point_config_at(partial, directory)
        partial.rename(directory)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise


def _point_config_at(partial: Path, directory: Path) -> None:
    """hls4ml records its output directory in hls4ml_config.yml: make it the final one."""
    config = partial / "hls4ml_config.yml"
    if config.is_file():
        atomic_write_text(config, config.read_text().replace(str(partial), str(directory)))


def _describe_layers(hls_model, settings: FirmwareSettings) -> tuple[list[dict], list[str]]:
    """Per layer: class, output size, the C++ types hls4ml generated, reuse factor and weight counts."""
    described, warnings = [], []
    for layer in hls_model.get_layers():
        types = {}
        for key, named_type in layer.types.items():
            if key == "index_t":
                continue
            types[key.removesuffix("_t")] = named_type.precision.definition_cpp()
        entry = {
            "name": layer.name,
            "class": layer.class_name,
            "outputs": int(np.prod(layer.get_output_variable().shape)),
            "types": types,
        }
        if layer.class_name == "Dense":
            n_in, n_out = int(layer.get_attr("n_in")), int(layer.get_attr("n_out"))
            reuse = int(layer.get_attr("reuse_factor"))
            zeros = int(np.count_nonzero(layer.weights["weight"].data == 0))
            entry |= {
                "n_in": n_in,
                "n_out": n_out,
                "weights": n_in * n_out,
                "zero_weights": zeros,
                "reuse_factor": reuse,
                # hls4ml's own cap on the layer's parallel multipliers (its multiplier_limit); synthesis
                # decides how many DSPs that becomes (narrow products go to LUTs).
                "multiplier_limit": math.ceil(n_in * n_out / reuse) - zeros // reuse,
            }
            if reuse != settings.reuse_factor:
                warnings.append(
                    f"reuse_factor={settings.reuse_factor} is not valid for layer {layer.name} "
                    f"({n_in}×{n_out}); hls4ml used {reuse}"
                )
        described.append(entry)
    return described, warnings


@contextlib.contextmanager
def _quiet(buffer: io.StringIO | None = None):
    """hls4ml prints its progress and the compiler's output to stdout: keep them for the log instead."""
    with contextlib.redirect_stdout(buffer if buffer is not None else io.StringIO()):
        yield


def layer_ranges(network: ScoreNetwork, settings: FirmwareSettings, samples: Iterable[np.ndarray]) -> dict:
    """Per layer with a set type: how its float values (Keras, on every event of ``samples``) fit that type.

    A value outside its type's range saturates or wraps around on chip; this says which layer needs more
    integer bits, and how many, independently of the emulation. Per layer: ``share_outside`` (of all its
    values), ``max_abs`` and ``integer_bits_needed`` (sign included) to hold every value.
    """
    import keras

    model = firmware_keras_model(network)
    names = [name for name in network.layer_names() if settings.result_type(name) is not None]
    probe = keras.Model(model.inputs[0], [model.get_layer(name).output for name in names[1:]])
    outside = dict.fromkeys(names, 0)
    total = dict.fromkeys(names, 0)
    largest = dict.fromkeys(names, 0.0)
    for events in samples:
        flat = np.asarray(events, dtype=np.float32).reshape(len(events), -1)
        for start in range(0, len(flat), 65536):
            batch = flat[start : start + 65536]
            layer_values = probe(batch, training=False)
            layer_values = layer_values if isinstance(layer_values, list | tuple) else [layer_values]
            for name, values in zip(names, [batch, *(np.asarray(v) for v in layer_values)], strict=True):
                kind = settings.result_type(name)
                outside[name] += np.count_nonzero((values < kind.lowest) | (values > kind.highest))
                total[name] += values.size
                largest[name] = max(largest[name], float(np.max(np.abs(values))) if values.size else 0.0)
    return {
        name: {
            "type": str(settings.result_type(name)),
            "share_outside": outside[name] / total[name] if total[name] else 0.0,
            "max_abs": largest[name],
            # 2^(I-1) > max |value|: the integer bits (with the sign) that hold every value.
            "integer_bits_needed": int(np.floor(np.log2(largest[name]))) + 2 if largest[name] > 0 else 1,
        }
        for name in names
    }


def compiler_version() -> str | None:
    """g++'s version line, or None where g++ is missing."""
    import subprocess

    if shutil.which("g++") is None:
        return None
    result = subprocess.run(["g++", "--version"], capture_output=True, text=True, check=False)
    return result.stdout.splitlines()[0] if result.stdout else None
