"""The one table of operations: every name of the Array API 2024.12 namespace a backend offers.

Backends bind each name from their framework's Array API namespace unless they write it by
hand (``core/backend.py``: ``bind_namespace``); tests check that every backend has every name;
the gradient work reads which arguments are differentiable. ``differentiable`` lists the
positions of the arguments that carry gradients (empty: integer, boolean or piecewise-constant
results, or not a function of arrays at all); ``arrays`` counts the leading positional array
arguments (0: none, or a list of arrays as ``concat`` takes).
"""

from __future__ import annotations

from dataclasses import dataclass

ARRAY_API_VERSION = "2024.12"


@dataclass(frozen=True)
class Op:
    """One namespace member: its name, the standard's category, its differentiable arguments
    and how many leading positional arguments are arrays."""

    name: str
    category: str
    differentiable: tuple[int, ...] = ()
    note: str = ""
    arrays: int = 1


def _group(category: str, names: str, differentiable: tuple[int, ...] = (),
           note: str = "", arrays: int = 1) -> tuple[Op, ...]:
    return tuple(Op(name, category, differentiable, note, arrays) for name in names.split())


UNARY, BINARY = (0,), (0, 1)
"""Differentiable in the one array argument; in both (elementwise: exactly two arrays)."""

MAIN: tuple[Op, ...] = (
    *_group("creation", "arange empty eye full linspace ones zeros", arrays=0),
    *_group("creation", "empty_like full_like ones_like zeros_like from_dlpack"),
    *_group("creation", "meshgrid", UNARY, "every array argument", 0),
    *_group("creation", "asarray tril triu", UNARY),
    *_group("data type", "astype", UNARY),
    *_group("data type", "can_cast finfo iinfo isdtype result_type", arrays=0),
    *_group("elementwise", "abs", UNARY, "subgradient 0 at 0"),
    *_group("elementwise", "acos acosh asin asinh atan atanh cos cosh exp expm1 log log1p log2 "
                           "log10 negative positive reciprocal sin sinh sqrt square tan tanh "
                           "conj real imag", UNARY),
    *_group("elementwise", "add atan2 divide hypot logaddexp multiply pow subtract", BINARY,
            arrays=2),
    *_group("elementwise", "maximum minimum", BINARY, "a tie sends the gradient to x1", 2),
    *_group("elementwise", "clip", UNARY, "gradient 1 on the bounds (array bounds: where "
                                          "they bind)", 3),
    *_group("elementwise", "copysign", UNARY, "piecewise constant in x2: gradient 0", 2),
    *_group("elementwise", "ceil floor round sign trunc", (), "piecewise constant: gradient 0"),
    *_group("elementwise", "bitwise_invert isfinite isinf isnan logical_not signbit"),
    *_group("elementwise", "remainder", BINARY, "gradient -floor(x1 / x2) in x2", 2),
    *_group("elementwise", "bitwise_and bitwise_left_shift bitwise_or bitwise_right_shift "
                           "bitwise_xor equal floor_divide greater greater_equal less "
                           "less_equal logical_and logical_or logical_xor nextafter not_equal",
            arrays=2),
    *_group("indexing", "take take_along_axis", UNARY, "integer indices", 2),
    *_group("linear algebra", "matmul tensordot vecdot", BINARY, arrays=2),
    *_group("linear algebra", "matrix_transpose", UNARY),
    *_group("manipulation", "broadcast_arrays concat stack", UNARY, "every array argument", 0),
    *_group("manipulation", "broadcast_to expand_dims flip moveaxis permute_dims repeat reshape "
                            "roll squeeze tile unstack", UNARY),
    *_group("searching", "argmax argmin count_nonzero nonzero"),
    *_group("searching", "searchsorted", arrays=2),
    *_group("searching", "where", (1, 2), "the condition is boolean", 3),
    *_group("set", "unique_all unique_counts unique_inverse unique_values"),
    *_group("sorting", "sort", UNARY),
    *_group("sorting", "argsort"),
    *_group("statistical", "cumulative_sum cumulative_prod mean prod std sum var", UNARY),
    *_group("statistical", "max min", UNARY, "ties share the gradient equally"),
    *_group("utility", "diff", UNARY),
    *_group("utility", "all any"),
    *_group("inspection", "__array_namespace_info__", arrays=0),
)
"""The main namespace's 134 functions."""

CONSTANTS = ("e", "inf", "nan", "newaxis", "pi")
DTYPES = ("bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
          "float32", "float64", "complex64", "complex128")

LINALG: tuple[Op, ...] = (
    *_group("linalg", "cholesky det diagonal eigvalsh inv matrix_norm matrix_power "
                      "matrix_transpose pinv slogdet svdvals trace vector_norm", UNARY),
    *_group("linalg", "cross matmul outer solve tensordot vecdot", BINARY, arrays=2),
    *_group("linalg", "eigh qr svd", UNARY, "gradients of the decomposition's outputs "
                                            "(well-separated spectra)"),
    *_group("linalg", "matrix_rank"),
)
"""The ``linalg`` extension's 23 functions."""

FFT: tuple[Op, ...] = (
    *_group("fft", "fft ifft fftn ifftn rfft irfft rfftn irfftn hfft ihfft", UNARY),
    *_group("fft", "fftfreq rfftfreq", arrays=0),
    *_group("fft", "fftshift ifftshift"),
)
"""The ``fft`` extension, offered where the framework has it."""


def names(ops: tuple[Op, ...]) -> tuple[str, ...]:
    """The names of a group of operations, in table order."""
    return tuple(op.name for op in ops)
