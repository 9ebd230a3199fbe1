"""Architecture specs: the JSON a user sends to describe a hypothesis space.

A spec is a discriminated union on ``name``; each family validates its own fields so a bad spec is
rejected with the offending field named before anything is built. The ``init`` block is part of
the hypothesis space (docs/methods.md, Vocabulary): two specs that differ only in ``init`` describe two
different priors.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_validator

Activation = Literal["relu", "gelu", "tanh", "sigmoid", "gaussian", "sin", "identity"]


class _Spec(BaseModel):
    # Unknown keys are almost always typos ("hiden"); refusing them beats silently ignoring them.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class InitSpec(_Spec):
    """Distribution every weight and bias is drawn from (``models.init``).

    ``normal``: N(0, scale^2); ``uniform``: U(-scale, scale); ``default``: PyTorch's own per-layer
    init (``scale`` is then ignored). Normalisation gains are 1 and shifts 0 unless ``norms`` is
    true, which draws them from ``dist`` too (with ``default`` they stay 1 and 0, PyTorch's rule).
    """

    dist: Literal["default", "normal", "uniform"] = "default"
    scale: float = Field(default=1.0, gt=0, le=1e3)
    norms: bool = False


class MLPSpec(_Spec):
    name: Literal["mlp"]
    in_dim: int = Field(ge=1, le=1_000_000)
    hidden: list[Annotated[int, Field(ge=1, le=65_536)]] = Field(default_factory=list, max_length=64)
    out_dim: int = Field(ge=1, le=100_000)
    activation: Activation = "relu"
    layernorm: bool = False
    residual: bool = False
    bias: bool = True
    init: InitSpec = InitSpec()

    @model_validator(mode="after")
    def _residual_needs_equal_widths(self) -> "MLPSpec":
        # A residual connection adds a hidden layer's input to its output, so consecutive hidden
        # widths must match; we do not insert hidden projections that would change the space.
        if self.residual and len(set(self.hidden)) > 1:
            raise ValueError("residual=true needs all hidden widths equal (got %s)" % self.hidden)
        return self


class CNNSpec(_Spec):
    name: Literal["cnn"]
    in_channels: int = Field(ge=1, le=4096)
    image_size: int = Field(ge=1, le=4096)
    channels: list[Annotated[int, Field(ge=1, le=8192)]] = Field(min_length=1, max_length=64)
    kernel_size: int = Field(default=3, ge=1, le=31)
    padding: Literal["zeros", "circular"] = "zeros"
    pool: Literal["global_avg", "flatten"] = "global_avg"
    out_dim: int = Field(ge=1, le=100_000)
    activation: Activation = "relu"
    init: InitSpec = InitSpec()

    @model_validator(mode="after")
    def _kernel_is_odd(self) -> "CNNSpec":
        # 'same' padding with stride 1 keeps the image size only for odd kernels; that is what
        # makes a circular CNN with global pooling exactly shift-invariant (docs/methods.md §2).
        if self.kernel_size % 2 == 0:
            raise ValueError("kernel_size must be odd so that padding keeps the image size")
        if self.padding == "circular" and self.kernel_size // 2 > self.image_size:
            # Circular padding wraps at most once around the image.
            raise ValueError("circular padding needs kernel_size // 2 <= image_size")
        return self


class ViTSpec(_Spec):
    name: Literal["vit"]
    in_channels: int = Field(default=1, ge=1, le=4096)
    image_size: int = Field(ge=1, le=4096)
    patch_size: int = Field(ge=1, le=4096)
    dim: int = Field(ge=1, le=8192)
    depth: int = Field(ge=0, le=64)
    heads: int = Field(ge=1, le=256)
    mlp_ratio: float = Field(default=2.0, gt=0, le=16)
    out_dim: int = Field(ge=1, le=100_000)
    init: InitSpec = InitSpec()

    @model_validator(mode="after")
    def _shapes_divide(self) -> "ViTSpec":
        if self.image_size % self.patch_size:
            raise ValueError("patch_size must divide image_size")
        if self.dim % self.heads:
            raise ValueError("heads must divide dim")
        return self


class TokenInput(_Spec):
    """Integer token ids in ``[0, vocab_size)``."""

    type: Literal["tokens"]
    vocab_size: int = Field(ge=2, le=1_000_000)


class FeatureInput(_Spec):
    """Real feature vectors of size ``dim`` at each position."""

    type: Literal["features"]
    dim: int = Field(ge=1, le=100_000)


class TransformerSpec(_Spec):
    name: Literal["transformer"]
    input: Annotated[Union[TokenInput, FeatureInput], Field(discriminator="type")]
    seq_len: int = Field(ge=1, le=65_536)
    dim: int = Field(ge=1, le=8192)
    depth: int = Field(ge=0, le=64)
    heads: int = Field(ge=1, le=256)
    mlp_ratio: float = Field(default=2.0, gt=0, le=16)
    pool: Literal["mean", "cls", "none"] = "mean"
    out_dim: int = Field(ge=1, le=100_000)
    init: InitSpec = InitSpec()

    @model_validator(mode="after")
    def _heads_divide(self) -> "TransformerSpec":
        if self.dim % self.heads:
            raise ValueError("heads must divide dim")
        return self


InputKind = Literal["tabular", "image", "tokens", "sequence"]


class DataInput(_Spec):
    """How one input sample is shaped: ``{"kind": "image", "shape": [C, H, W]}``.

    ``image``: ``[C, H, W]``; ``tabular``: ``[D]``; ``sequence``: ``[L, D]``; ``tokens``: ``[L]``
    integer ids below ``vocab_size``.
    """

    kind: InputKind
    shape: list[Annotated[int, Field(ge=1, le=1_000_000)]] = Field(min_length=1, max_length=4)
    vocab_size: int | None = Field(default=None, ge=2, le=1_000_000)

    @model_validator(mode="after")
    def _rank_fits_kind(self) -> "DataInput":
        ranks = {"image": 3, "tabular": 1, "sequence": 2, "tokens": 1}
        if len(self.shape) != ranks[self.kind]:
            raise ValueError(f"{self.kind} samples have {ranks[self.kind]} axes, got shape {self.shape}")
        if (self.kind == "tokens") != (self.vocab_size is not None):
            raise ValueError("vocab_size is given for token inputs, and only for them")
        return self


class OnnxSpec(_Spec):
    """An uploaded ONNX graph (``models.graph``) as a hypothesis space.

    ``graph`` is the sha256 of the .onnx file; ``input`` and ``output_shape`` are per sample and
    are filled in from the checked graph when it is uploaded. Its parameters are the graph's
    weight, bias, norm and embedding initializers (``models.graph.roles``); ``init`` re-draws them.
    """

    name: Literal["onnx"]
    graph: str = Field(pattern=r"^[0-9a-f]{64}$")
    input: DataInput
    output_shape: list[Annotated[int, Field(ge=1)]] = Field(min_length=1, max_length=4)
    init: InitSpec = InitSpec()

    @property
    def out_dim(self) -> int:
        return self.output_shape[-1]


ArchSpec = Annotated[Union[MLPSpec, CNNSpec, ViTSpec, TransformerSpec, OnnxSpec], Field(discriminator="name")]
ARCH_ADAPTER: TypeAdapter[ArchSpec] = TypeAdapter(ArchSpec)
ARCH_FAMILIES = ("mlp", "cnn", "vit", "transformer")


def parse_arch(data: Any) -> MLPSpec | CNNSpec | ViTSpec | TransformerSpec | OnnxSpec:
    """Validate a JSON-like dict (or JSON string) into an architecture spec.

    Raises ``pydantic.ValidationError`` naming the field, e.g. ``hidden.1: Input should be greater
    than or equal to 1``.
    """
    if isinstance(data, (str, bytes)):
        return ARCH_ADAPTER.validate_json(data)
    return ARCH_ADAPTER.validate_python(data)


def input_signature(spec: MLPSpec | CNNSpec | ViTSpec | TransformerSpec | OnnxSpec) -> tuple[InputKind, tuple[int, ...]]:
    """What one input sample must look like: its kind and per-sample shape.

    Datasets are checked against this before a run is queued, so a shape error is a 422, not a
    worker crash.
    """
    if isinstance(spec, OnnxSpec):
        return spec.input.kind, tuple(spec.input.shape)
    if isinstance(spec, MLPSpec):
        return "tabular", (spec.in_dim,)
    if isinstance(spec, (CNNSpec, ViTSpec)):
        return "image", (spec.in_channels, spec.image_size, spec.image_size)
    if isinstance(spec.input, TokenInput):
        return "tokens", (spec.seq_len,)
    return "sequence", (spec.seq_len, spec.input.dim)


def data_input_for(sample_shape: tuple[int, ...], integer: bool) -> DataInput | None:
    """What a dataset's own sample shape says about its inputs, when it says enough.

    Rank-3 float samples are images ``[C, H, W]``, rank-2 sequences, rank-1 feature vectors;
    integer ids say nothing about their vocabulary, so they give None.
    """
    kind = {3: "image", 2: "sequence", 1: "tabular"}.get(len(sample_shape))
    if integer or kind is None or not all(d >= 1 for d in sample_shape):
        return None
    return DataInput(kind=kind, shape=list(sample_shape))


def data_signature(
    arch: MLPSpec | CNNSpec | ViTSpec | TransformerSpec | OnnxSpec, data: DataInput | None
) -> tuple[InputKind, tuple[int, ...]]:
    """The kind and per-sample shape of the *data* the model is probed with.

    Without ``data`` (``task.input``), the architecture's own ``input_signature``. An architecture
    that takes flat feature vectors (``mlp``, an ONNX graph with a rank-1 input) consumes any data
    of as many values, flattened: an MLP of ``in_dim = C*H*W`` is probed with images, so image
    transforms apply to it exactly as to a CNN. Otherwise ``data`` must match the architecture.

    Raises ``ValueError`` (message for ``task.input``) when they do not fit.
    """
    kind, shape = input_signature(arch)
    if data is None:
        return kind, shape
    data_shape = tuple(data.shape)
    if data_shape == shape and (data.kind == "tokens") == (kind == "tokens"):
        return data.kind, data_shape
    flat = kind == "tabular" and len(shape) == 1
    if flat and data.kind != "tokens" and _prod(data_shape) == shape[0]:
        return data.kind, data_shape
    raise ValueError(
        f"{data.kind} samples of shape {list(data_shape)} do not fit the {arch.name}, which takes {kind} inputs of "
        f"shape {list(shape)}" + (" (flat models take any data of as many values)" if flat else "")
    )


def _prod(shape: tuple[int, ...]) -> int:
    out = 1
    for d in shape:
        out *= d
    return out


def token_vocab_size(spec: MLPSpec | CNNSpec | ViTSpec | TransformerSpec | OnnxSpec) -> int:
    """The vocabulary of a model that takes token ids (``ValueError`` for any other)."""
    if isinstance(spec, TransformerSpec) and isinstance(spec.input, TokenInput):
        return spec.input.vocab_size
    if isinstance(spec, OnnxSpec) and spec.input.kind == "tokens" and spec.input.vocab_size is not None:
        return spec.input.vocab_size
    raise ValueError(f"the {spec.name} does not take token ids")
