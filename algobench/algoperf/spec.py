"""Stand-in for `algoperf.spec`: every name submissions use in annotations, evaluated at import."""

from __future__ import annotations

import enum
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple, Union

from torch import nn

from algobench.errors import TrainingComplete

__all__ = [
    "LossType", "ForwardPassMode", "ParameterType", "Tensor", "ShapeTuple", "Shape", "ParameterShapeTree",
    "ParameterKey", "ParameterContainer", "ParameterTypeTree", "RandomState", "OptimizerState", "Hyperparameters",
    "Timing", "Steps", "ModelAuxiliaryState", "ModelInitState", "UpdateReturn", "Workload",
    "TrainingCompleteError", "InitOptimizerFn", "UpdateParamsFn", "PrepareForEvalFn", "DataSelectionFn",
    "LossFn", "LossType",
]


class LossType(enum.Enum):
    SOFTMAX_CROSS_ENTROPY = 0
    SIGMOID_CROSS_ENTROPY = 1
    MEAN_SQUARED_ERROR = 2
    CTC_LOSS = 3
    MEAN_ABSOLUTE_ERROR = 4


class ForwardPassMode(enum.Enum):
    TRAIN = 0
    EVAL = 1


class ParameterType(enum.Enum):
    WEIGHT = 0
    BIAS = 1
    CONV_WEIGHT = 2
    BATCH_NORM_SCALE = 3
    BATCH_NORM_BIAS = 4
    LAYER_NORM_SCALE = 5
    LAYER_NORM_BIAS = 6
    EMBEDDING = 7
    ATTENTION_Q = 8
    ATTENTION_K = 9
    ATTENTION_V = 10
    ATTENTION_OUT = 11
    ATTENTION_QKV = 12
    ATTENTION_KV = 13
    ATTENTION_BIAS = 14


Tensor = Any


class ShapeTuple:
    def __init__(self, shape_tuple):
        self.shape_tuple = shape_tuple

    def __repr__(self) -> str:
        return f"ShapeTuple({self.shape_tuple})"

    def __eq__(self, other) -> bool:
        return isinstance(other, ShapeTuple) and self.shape_tuple == other.shape_tuple


Shape = Union[Tuple[int], Tuple[int, int], Tuple[int, int, int], Tuple[int, int, int, int], ShapeTuple]
ParameterShapeTree = Dict[str, Dict[str, Shape]]
ParameterKey = str
ParameterContainer = Union[Dict[ParameterKey, Dict[ParameterKey, Tensor]], nn.Module]
ParameterTypeTree = Dict[ParameterKey, Dict[ParameterKey, ParameterType]]
RandomState = Any
OptimizerState = Union[Dict[str, Any], Tuple[Any, Any]]
Hyperparameters = Any
Timing = int
Steps = int
ModelAuxiliaryState = Any
ModelInitState = Tuple[ParameterContainer, ModelAuxiliaryState]
UpdateReturn = Tuple[OptimizerState, ParameterContainer, ModelAuxiliaryState]

# Raising it ends training after the step and a final eval: the harness's own exception.
TrainingCompleteError = TrainingComplete


class Workload:
    """Base class name only: algobench hands submissions `algobench.algoperf.adapter.AlgoPerfWorkload`."""


InitOptimizerFn = Callable[[Workload, ParameterContainer, ModelAuxiliaryState, Hyperparameters, RandomState],
                           OptimizerState]
UpdateParamsFn = Callable[..., UpdateReturn]
PrepareForEvalFn = Callable[..., UpdateReturn]
DataSelectionFn = Callable[[Workload, Iterator[Dict[str, Any]], OptimizerState, ParameterContainer, LossType,
                            Hyperparameters, int, RandomState], Tuple[Tensor, Tensor]]
LossFn = Callable[..., Dict[str, Tensor]]
_ = (List, Optional)  # re-exported typing names some submissions take from here
