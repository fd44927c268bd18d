"""A local gRPC model server with the API subset of ``tensorflow_model_server``.

It serves any SavedModel with named signatures through TF-Serving's ``PredictionService``
(``Predict``, ``GetModelMetadata``) and ``ModelService`` (``GetModelStatus``), with the same
command-line flags where they exist::

    python -m export.serve --port 8500 --model_name unisrec --model_base_path /models/unisrec
    python -m export.serve --port 8500 --model_config_file /models/models.config

Versions are integer sub-directories of the base path. The server loads the versions its
version policy aspires to (by default the highest one), polls the file system and picks up new
versions (load the new one, swap it in, unload the old one), honours ``model_spec.version`` and
``model_spec.version_label``, fills signature inputs that declare a default value, replays
``assets.extra/tf_serving_warmup_requests`` before a version becomes available, and answers bad
requests with the status codes TF-Serving uses:

==========================================  ===================
request problem                             status code
==========================================  ===================
no ``model_spec``                           INVALID_ARGUMENT
unknown model name or version               NOT_FOUND
unknown version label                       INVALID_ARGUMENT
unknown signature name                      FAILED_PRECONDITION
missing, extra or misnamed input            INVALID_ARGUMENT
malformed TensorProto                       INVALID_ARGUMENT
wrong dtype, wrong rank or shape            INVALID_ARGUMENT
unknown or duplicate ``output_filter``      INVALID_ARGUMENT
error raised by the model                   the TensorFlow error's code
anything unexpected                         INTERNAL
==========================================  ===================

It is meant for development and tests where the real binary is not installed; production runs
the ``tensorflow/serving`` image with the same base path and flags.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import logging
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import grpc
import numpy as np
import tensorflow as tf
from google.protobuf import text_format
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_log_pb2,
    prediction_service_pb2_grpc,
)
from tensorflow_serving.config import file_system_storage_path_source_pb2, model_server_config_pb2

from export import contract

try:
    import tensorflow_text  # noqa: F401  (registers the TF Text ops SavedModels may use)
except ImportError:  # pragma: no cover - tensorflow-text is a declared dependency
    tensorflow_text = None

logger = logging.getLogger("export.serve")

DEFAULT_SIGNATURE = contract.SERVING_DEFAULT
SIGNATURE_DEF_FIELD = "signature_def"
WARMUP_FILE = contract.WARMUP_FILE
MAX_WARMUP_RECORDS = 1000
DEFAULT_MAX_TENSOR_ELEMENTS = 1 << 24
GRPC_MAX_MESSAGE_BYTES = 2**31 - 1

_GRPC_CODE_BY_NUMBER: dict[int, grpc.StatusCode] = {code.value[0]: code for code in grpc.StatusCode}
_UNSUPPORTED_INPUT_DTYPES = frozenset(
    {types_pb2.DT_INVALID, types_pb2.DT_RESOURCE, types_pb2.DT_VARIANT}
)

_State = get_model_status_pb2.ModelVersionStatus.State
_ServableVersionPolicy = (
    file_system_storage_path_source_pb2.FileSystemStoragePathSourceConfig.ServableVersionPolicy
)


class ServingError(Exception):
    """A request failure with the gRPC status code TF-Serving would answer."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _dtype_name(dtype_enum: int) -> str:
    try:
        return tf.dtypes.as_dtype(dtype_enum).name
    except TypeError:
        return f"<invalid dtype {dtype_enum}>"


def _shape_str(dims: Sequence[int | None] | None) -> str:
    if dims is None:
        return "<unknown>"
    return "[" + ",".join("?" if d is None or d < 0 else str(d) for d in dims) + "]"


def _tf_error_to_serving_error(error: tf.errors.OpError) -> ServingError:
    code = _GRPC_CODE_BY_NUMBER.get(error.error_code, grpc.StatusCode.UNKNOWN)
    return ServingError(code, error.message)


def tensor_proto_to_ndarray(
    proto: tensor_pb2.TensorProto, alias: str, max_elements: int = DEFAULT_MAX_TENSOR_ELEMENTS
) -> np.ndarray:
    """Converts a request TensorProto to an array, as ``Tensor::FromProto`` would accept it.

    Raises:
        ServingError: INVALID_ARGUMENT ("tensor parsing error: ALIAS") for a malformed proto.
    """

    def fail(reason: str) -> ServingError:
        return ServingError(
            grpc.StatusCode.INVALID_ARGUMENT, f"tensor parsing error: {alias} ({reason})"
        )

    if proto.dtype in _UNSUPPORTED_INPUT_DTYPES or proto.dtype not in types_pb2.DataType.values():
        raise fail(f"unsupported dtype {_dtype_name(proto.dtype)}")
    if proto.tensor_shape.unknown_rank:
        raise fail("shape has unknown rank")
    dims = [d.size for d in proto.tensor_shape.dim]
    if any(d < 0 for d in dims):
        raise fail(f"negative dimension in shape {dims}")
    num_elements = math.prod(dims)
    if num_elements > max_elements:
        raise fail(f"{num_elements} elements exceed the limit of {max_elements}")
    dtype = tf.dtypes.as_dtype(proto.dtype)
    if proto.tensor_content:
        if dtype == tf.string:
            raise fail("tensor_content is not supported for DT_STRING; use string_val")
        expected = num_elements * np.dtype(dtype.as_numpy_dtype).itemsize
        if len(proto.tensor_content) != expected:
            raise fail(
                f"tensor_content has {len(proto.tensor_content)} bytes, shape {dims} of "
                f"{dtype.name} needs {expected}"
            )
    try:
        array = tf.make_ndarray(proto)
    except (ValueError, TypeError) as exc:
        raise fail(str(exc)) from None
    if array.size != num_elements:
        raise fail(f"{array.size} values for shape {dims}")
    return array


def ndarray_to_tensor_proto(value: np.ndarray | tf.Tensor) -> tensor_pb2.TensorProto:
    """Converts an output tensor to a TensorProto (typed value fields for strings)."""
    array = value.numpy() if isinstance(value, tf.Tensor) else np.asarray(value)
    return tf.make_tensor_proto(array)


@dataclasses.dataclass(frozen=True)
class _InputSpec:
    alias: str
    dtype: int
    dims: tuple[int | None, ...] | None

    def check(self, array: np.ndarray, proto_dtype: int, position: int) -> None:
        if proto_dtype != self.dtype:
            raise ServingError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"Expects arg[{position}] ({self.alias}) to be {_dtype_name(self.dtype)} but "
                f"{_dtype_name(proto_dtype)} is provided",
            )
        if self.dims is None:
            return
        compatible = array.ndim == len(self.dims) and all(
            want is None or want == got for want, got in zip(self.dims, array.shape, strict=True)
        )
        if not compatible:
            raise ServingError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"input '{self.alias}' has shape {_shape_str(array.shape)} which is incompatible "
                f"with the signature's shape {_shape_str(self.dims)}",
            )


@dataclasses.dataclass
class _Signature:
    name: str
    function: Any
    signature_def: meta_graph_pb2.SignatureDef
    inputs: dict[str, _InputSpec]
    positions: dict[str, int]
    defaults: dict[str, tuple[np.ndarray, int]]


def _dims_from_proto(shape: Any) -> tuple[int | None, ...] | None:
    if shape.unknown_rank:
        return None
    return tuple(None if d.size < 0 else d.size for d in shape.dim)


def read_meta_graph(export_dir: str) -> meta_graph_pb2.MetaGraphDef:
    """Reads the serving MetaGraphDef of a SavedModel (``saved_model.pb`` or ``.pbtxt``)."""
    saved_model = saved_model_pb2.SavedModel()
    pb_path = os.path.join(export_dir, "saved_model.pb")
    pbtxt_path = os.path.join(export_dir, "saved_model.pbtxt")
    if tf.io.gfile.exists(pb_path):
        with tf.io.gfile.GFile(pb_path, "rb") as f:
            saved_model.ParseFromString(f.read())
    elif tf.io.gfile.exists(pbtxt_path):
        with tf.io.gfile.GFile(pbtxt_path, "r") as f:
            text_format.Parse(f.read(), saved_model)
    else:
        raise FileNotFoundError(f"no saved_model.pb or saved_model.pbtxt in {export_dir}")
    for meta_graph in saved_model.meta_graphs:
        if "serve" in meta_graph.meta_info_def.tags:
            return meta_graph
    if len(saved_model.meta_graphs) == 1:
        return saved_model.meta_graphs[0]
    raise ValueError(f"no MetaGraphDef tagged 'serve' in {export_dir}")


class LoadedVersion:
    """One loaded version of a model: its signatures, ready to answer Predict."""

    def __init__(
        self,
        name: str,
        version: int,
        path: str,
        max_tensor_elements: int = DEFAULT_MAX_TENSOR_ELEMENTS,
    ) -> None:
        self.name = name
        self.version = version
        self.path = path
        self.max_tensor_elements = max_tensor_elements
        self.meta_graph = read_meta_graph(path)
        self._module = tf.saved_model.load(path, tags=["serve"])
        self.signatures: dict[str, _Signature] = {}
        for key, function in self._module.signatures.items():
            signature_def = self.meta_graph.signature_def.get(key)
            if signature_def is None:
                continue
            aliases = sorted(signature_def.inputs)
            inputs = {
                alias: _InputSpec(
                    alias,
                    signature_def.inputs[alias].dtype,
                    _dims_from_proto(signature_def.inputs[alias].tensor_shape),
                )
                for alias in aliases
            }
            defaults = {
                alias: (tf.make_ndarray(proto), proto.dtype)
                for alias, proto in signature_def.defaults.items()
            }
            self.signatures[key] = _Signature(
                name=key,
                function=function,
                signature_def=signature_def,
                inputs=inputs,
                positions={alias: i for i, alias in enumerate(aliases)},
                defaults=defaults,
            )

    @property
    def signature_def_map(self) -> Mapping[str, meta_graph_pb2.SignatureDef]:
        """Every SignatureDef of the MetaGraphDef, as TF-Serving reports it in metadata."""
        return self.meta_graph.signature_def

    def predict(
        self, request: predict_pb2.PredictRequest, context: grpc.ServicerContext | None = None
    ) -> predict_pb2.PredictResponse:
        """Runs one Predict request against this version.

        A request whose client has gone (cancelled, disconnected, past its deadline) while it
        waited for a thread or was parsed is dropped there: nobody would read the answer. One
        already running is computed to its end (a running TensorFlow function cannot be
        stopped).
        """
        _check_client_waits(context)
        signature_name = request.model_spec.signature_name or DEFAULT_SIGNATURE
        signature = self.signatures.get(signature_name)
        if signature is None:
            raise ServingError(
                grpc.StatusCode.FAILED_PRECONDITION,
                f'Serving signature key "{signature_name}" not found.',
            )
        inputs = self._parse_inputs(signature, request.inputs)
        output_aliases = self._output_aliases(signature, request.output_filter)
        _check_client_waits(context)
        try:
            outputs = signature.function(
                **{alias: tf.constant(value) for alias, value in inputs.items()}
            )
        except tf.errors.OpError as exc:
            raise _tf_error_to_serving_error(exc) from None
        response = predict_pb2.PredictResponse()
        response.model_spec.name = self.name
        response.model_spec.version.value = self.version
        response.model_spec.signature_name = signature_name
        for alias in output_aliases:
            response.outputs[alias].CopyFrom(ndarray_to_tensor_proto(outputs[alias]))
        return response

    def _parse_inputs(
        self, signature: _Signature, request_inputs: Mapping[str, tensor_pb2.TensorProto]
    ) -> dict[str, np.ndarray]:
        expected = signature.inputs
        if len(request_inputs) > len(expected) or (
            len(request_inputs) < len(expected) and not signature.defaults
        ):
            sent = sorted(request_inputs)
            wanted = sorted(expected)
            extra = sorted(set(sent) - set(wanted))
            missing = sorted(set(wanted) - set(sent))
            raise ServingError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"input size does not match signature: {len(sent)}!={len(wanted)} "
                f"len({{{','.join(sent)}}}) != len({{{','.join(wanted)}}}). "
                f"Sent extra: {{{','.join(extra)}}}. "
                f"Missing but required: {{{','.join(missing)}}}.",
            )
        arrays: dict[str, np.ndarray] = {}
        for alias, spec in expected.items():
            proto = request_inputs.get(alias)
            if proto is None:
                if alias not in signature.defaults:
                    raise ServingError(
                        grpc.StatusCode.INVALID_ARGUMENT,
                        f"Signature input alias: {alias} not found in request and no default "
                        f"value provided. Inputs expected to be in the request "
                        f"{{{','.join(sorted(request_inputs))}}}, or default input alias set: "
                        f"{','.join(sorted(signature.defaults))}",
                    )
                array, dtype_enum = signature.defaults[alias]
            else:
                array = tensor_proto_to_ndarray(proto, alias, self.max_tensor_elements)
                dtype_enum = proto.dtype
            spec.check(array, dtype_enum, signature.positions[alias])
            arrays[alias] = array
        unknown = sorted(set(request_inputs) - set(expected))
        if unknown:
            raise ServingError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"input tensor alias not found in signature: {','.join(unknown)}. Inputs "
                f"expected to be in the set {{{','.join(sorted(expected))}}}.",
            )
        return arrays

    @staticmethod
    def _output_aliases(signature: _Signature, output_filter: Iterable[str]) -> list[str]:
        outputs = signature.signature_def.outputs
        aliases: list[str] = []
        for alias in output_filter:
            if alias not in outputs:
                raise ServingError(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"output tensor alias not found in signature: {alias} Outputs expected to "
                    f"be in the set {{{','.join(sorted(outputs))}}}.",
                )
            if alias in aliases:
                raise ServingError(
                    grpc.StatusCode.INVALID_ARGUMENT, f"duplicate output tensor alias: {alias}"
                )
            aliases.append(alias)
        return aliases or sorted(outputs)

    def warm_up(self) -> int:
        """Replays ``assets.extra/tf_serving_warmup_requests``; returns the number replayed.

        Raises:
            RuntimeError: when a warm-up request fails (the version is then not served).
        """
        path = os.path.join(self.path, WARMUP_FILE)
        if not tf.io.gfile.exists(path):
            return 0
        count = 0
        for record in tf.data.TFRecordDataset(path).take(MAX_WARMUP_RECORDS):
            log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
            if log.WhichOneof("log_type") != "predict_log":
                raise RuntimeError(f"warm-up record {count}: only predict_log is supported")
            request = log.predict_log.request
            try:
                self.predict(request)
            except ServingError as exc:
                raise RuntimeError(
                    f"warm-up request {count} failed: {exc.code.name}: {exc.message}"
                ) from None
            count += 1
        return count


@dataclasses.dataclass(frozen=True)
class ModelSource:
    """Where a model's versions live and which of them to serve."""

    name: str
    base_path: str
    version_policy: _ServableVersionPolicy = dataclasses.field(
        default_factory=_ServableVersionPolicy
    )
    version_labels: Mapping[str, int] = dataclasses.field(default_factory=dict)

    def aspired_versions(self, on_disk: Sequence[int]) -> list[int]:
        """The versions the policy wants loaded, out of those present on disk."""
        versions = sorted(on_disk)
        choice = self.version_policy.WhichOneof("policy_choice")
        if choice == "all":
            return versions
        if choice == "specific":
            wanted = set(self.version_policy.specific.versions)
            return [v for v in versions if v in wanted]
        num = self.version_policy.latest.num_versions if choice == "latest" else 1
        return versions[-max(num, 1) :]


def list_versions(base_path: str) -> list[int]:
    """Integer sub-directories of ``base_path`` that hold a SavedModel."""
    if not tf.io.gfile.isdir(base_path):
        return []
    versions = []
    for entry in tf.io.gfile.listdir(base_path):
        entry = entry.rstrip("/")
        if not entry.isdigit():
            continue
        directory = os.path.join(base_path, entry)
        if tf.io.gfile.exists(os.path.join(directory, "saved_model.pb")) or tf.io.gfile.exists(
            os.path.join(directory, "saved_model.pbtxt")
        ):
            versions.append(int(entry))
    return sorted(versions)


@dataclasses.dataclass
class _VersionState:
    state: int
    error: str = ""
    attempts: int = 0


class ServableManager:
    """Loads, swaps and unloads model versions; resolves a ModelSpec to a loaded version."""

    def __init__(
        self,
        sources: Sequence[ModelSource],
        *,
        poll_wait_seconds: float = 1.0,
        max_num_load_retries: int = 5,
        max_tensor_elements: int = DEFAULT_MAX_TENSOR_ELEMENTS,
    ) -> None:
        if not sources:
            raise ValueError("at least one model is required")
        names = [s.name for s in sources]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate model names in {names}")
        self.sources = {s.name: s for s in sources}
        self.poll_wait_seconds = poll_wait_seconds
        self.max_num_load_retries = max_num_load_retries
        self.max_tensor_elements = max_tensor_elements
        self._loaded: dict[str, dict[int, LoadedVersion]] = {name: {} for name in names}
        self._states: dict[str, dict[int, _VersionState]] = {name: {} for name in names}
        self._lock = threading.Lock()
        self._poll_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def poll_once(self) -> None:
        """Scans every base path once and loads/unloads versions to match the policies."""
        with self._poll_lock:
            for source in self.sources.values():
                try:
                    self._poll_model(source)
                except Exception:
                    logger.exception("polling %s at %s failed", source.name, source.base_path)

    def _poll_model(self, source: ModelSource) -> None:
        on_disk = list_versions(source.base_path)
        if not on_disk and not self._loaded[source.name]:
            logger.warning(
                "No versions of servable %s found under base path %s",
                source.name,
                source.base_path,
            )
        aspired = source.aspired_versions(on_disk)
        states = self._states[source.name]
        for version in aspired:
            if version in self._loaded[source.name]:
                continue
            state = states.setdefault(version, _VersionState(_State.START))
            if state.state == _State.END and state.attempts > self.max_num_load_retries:
                continue
            self._load(source, version, state)
        current = self._loaded[source.name]
        if any(v in current for v in aspired):
            for version in [v for v in current if v not in aspired]:
                self._unload(source.name, version)

    def _load(self, source: ModelSource, version: int, state: _VersionState) -> None:
        path = os.path.join(source.base_path, str(version))
        state.state = _State.LOADING
        state.attempts += 1
        logger.info("Loading servable: {name: %s version: %d} from %s", source.name, version, path)
        start = time.perf_counter()
        try:
            loaded = LoadedVersion(source.name, version, path, self.max_tensor_elements)
        except Exception as exc:
            # A damaged or half-copied version: say which folder and how to replace it.
            reason = (str(exc).strip().splitlines() or [""])[0]
            self._failed(
                source,
                version,
                state,
                f"{path}: not a loadable SavedModel ({type(exc).__name__}: {reason}); the "
                "versions already loaded keep serving: export it again with "
                "python -m export.saved_model",
            )
            return
        try:
            warmed = loaded.warm_up()
        except Exception as exc:
            self._failed(source, version, state, f"{type(exc).__name__}: {exc}")
            return
        with self._lock:
            updated = dict(self._loaded[source.name])
            updated[version] = loaded
            self._loaded[source.name] = updated
        state.state = _State.AVAILABLE
        state.error = ""
        logger.info(
            "Successfully loaded servable version {name: %s version: %d} in %.2fs "
            "(%d warm-up requests, signatures: %s)",
            source.name,
            version,
            time.perf_counter() - start,
            warmed,
            ", ".join(sorted(loaded.signatures)),
        )

    def _failed(self, source: ModelSource, version: int, state: _VersionState, error: str) -> None:
        state.state = _State.END
        state.error = error
        logger.error(
            "Loading servable: {name: %s version: %d} failed (attempt %d): %s",
            source.name,
            version,
            state.attempts,
            error,
        )

    def _unload(self, name: str, version: int) -> None:
        self._states[name][version] = _VersionState(_State.UNLOADING)
        with self._lock:
            updated = dict(self._loaded[name])
            updated.pop(version, None)
            self._loaded[name] = updated
        self._states[name][version] = _VersionState(_State.END)
        logger.info("Unloaded servable version {name: %s version: %d}", name, version)

    def start(self) -> None:
        """Starts the background poller (no-op when ``poll_wait_seconds <= 0``)."""
        if self.poll_wait_seconds <= 0 or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._poll_loop, name="version-poller", daemon=True)
        self._thread.start()

    def _poll_loop(self) -> None:
        while not self._stop.wait(self.poll_wait_seconds):
            self.poll_once()

    def stop(self) -> None:
        """Stops the poller and unloads everything."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
            self._thread = None
        with self._lock:
            self._loaded = {name: {} for name in self.sources}

    def loaded_versions(self, name: str) -> list[int]:
        """The versions of ``name`` that are available now."""
        return sorted(self._loaded.get(name, {}))

    def wait_until_available(
        self, name: str, version: int | None = None, timeout: float = 60.0
    ) -> bool:
        """Blocks until ``name`` (and ``version`` when given) is available."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            versions = self.loaded_versions(name)
            if versions and (version is None or version in versions):
                return True
            time.sleep(0.05)
        return False

    def resolve(self, model_spec: Any) -> LoadedVersion:
        """The loaded version a request's ModelSpec names.

        Raises:
            ServingError: NOT_FOUND for an unknown model or version, INVALID_ARGUMENT for an
                unknown version label.
        """
        name = model_spec.name
        source = self.sources.get(name)
        choice = model_spec.WhichOneof("version_choice")
        version: int | None = None
        if choice == "version":
            version = model_spec.version.value
        elif choice == "version_label":
            label = model_spec.version_label
            if source is None or label not in source.version_labels:
                raise ServingError(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"Unrecognized servable version label: {label}",
                )
            version = source.version_labels[label]
        versions = self._loaded.get(name, {})
        if version is None:
            if versions:
                return versions[max(versions)]
            raise ServingError(
                grpc.StatusCode.NOT_FOUND, f"Servable not found for request: Latest({name})"
            )
        loaded = versions.get(version)
        if loaded is None:
            raise ServingError(
                grpc.StatusCode.NOT_FOUND,
                f"Servable not found for request: Specific({name}, {version})",
            )
        return loaded

    def version_statuses(
        self, name: str, version: int | None = None
    ) -> list[get_model_status_pb2.ModelVersionStatus]:
        """ModelVersionStatus entries for GetModelStatus.

        Raises:
            ServingError: NOT_FOUND when the model or the version is unknown.
        """
        if name not in self.sources:
            raise ServingError(
                grpc.StatusCode.NOT_FOUND, f"Could not find any versions of model {name}"
            )
        states = dict(self._states[name])
        if version is not None:
            if version not in states:
                raise ServingError(
                    grpc.StatusCode.NOT_FOUND,
                    f"Could not find version {version} of model {name}",
                )
            states = {version: states[version]}
        if not states:
            raise ServingError(
                grpc.StatusCode.NOT_FOUND, f"Could not find any versions of model {name}"
            )
        statuses = []
        for v in sorted(states, reverse=True):
            entry = get_model_status_pb2.ModelVersionStatus(version=v, state=states[v].state)
            if states[v].error:
                entry.status.error_code = grpc.StatusCode.UNKNOWN.value[0]
                entry.status.error_message = states[v].error
            statuses.append(entry)
        return statuses


def _check_client_waits(context: grpc.ServicerContext | None) -> None:
    if context is not None and not context.is_active():
        raise ServingError(grpc.StatusCode.CANCELLED, "the client has gone")


def _abort(context: grpc.ServicerContext, error: ServingError) -> None:
    context.abort(error.code, error.message)


def _run_guarded(method: str, context: grpc.ServicerContext, handler: Any) -> Any:
    try:
        return handler()
    except ServingError as exc:
        error = exc
    except Exception as exc:
        logger.exception("%s failed with an unexpected error", method)
        error = ServingError(grpc.StatusCode.INTERNAL, f"{type(exc).__name__}: {exc}")
    _abort(context, error)
    return None


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    """``PredictionService``: Predict and GetModelMetadata; the rest answer UNIMPLEMENTED."""

    def __init__(self, manager: ServableManager) -> None:
        self.manager = manager

    def Predict(  # noqa: N802  (gRPC method name)
        self, request: predict_pb2.PredictRequest, context: grpc.ServicerContext
    ) -> predict_pb2.PredictResponse:
        return _run_guarded("Predict", context, lambda: self._predict(request, context))

    def _predict(
        self, request: predict_pb2.PredictRequest, context: grpc.ServicerContext | None = None
    ) -> predict_pb2.PredictResponse:
        if not request.HasField("model_spec"):
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, "Missing ModelSpec")
        return self.manager.resolve(request.model_spec).predict(request, context)

    def GetModelMetadata(  # noqa: N802  (gRPC method name)
        self,
        request: get_model_metadata_pb2.GetModelMetadataRequest,
        context: grpc.ServicerContext,
    ) -> get_model_metadata_pb2.GetModelMetadataResponse:
        return _run_guarded("GetModelMetadata", context, lambda: self._metadata(request))

    def _metadata(
        self, request: get_model_metadata_pb2.GetModelMetadataRequest
    ) -> get_model_metadata_pb2.GetModelMetadataResponse:
        if not request.HasField("model_spec"):
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, "Missing ModelSpec")
        if not request.metadata_field:
            raise ServingError(
                grpc.StatusCode.INVALID_ARGUMENT,
                "GetModelMetadataRequest must specify at least one metadata_field",
            )
        for field in request.metadata_field:
            if field != SIGNATURE_DEF_FIELD:
                raise ServingError(
                    grpc.StatusCode.INVALID_ARGUMENT, f"Metadata field {field} is not supported"
                )
        loaded = self.manager.resolve(request.model_spec)
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        for key, signature_def in loaded.signature_def_map.items():
            signature_map.signature_def[key].CopyFrom(signature_def)
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = loaded.name
        response.model_spec.version.value = loaded.version
        response.metadata[SIGNATURE_DEF_FIELD].Pack(signature_map)
        return response


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
    """``ModelService``: GetModelStatus; HandleReloadConfigRequest answers UNIMPLEMENTED."""

    def __init__(self, manager: ServableManager) -> None:
        self.manager = manager

    def GetModelStatus(  # noqa: N802  (gRPC method name)
        self, request: get_model_status_pb2.GetModelStatusRequest, context: grpc.ServicerContext
    ) -> get_model_status_pb2.GetModelStatusResponse:
        def handle() -> get_model_status_pb2.GetModelStatusResponse:
            if not request.HasField("model_spec"):
                raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, "Missing ModelSpec")
            spec = request.model_spec
            version = spec.version.value if spec.HasField("version") else None
            if spec.WhichOneof("version_choice") == "version_label":
                version = self.manager.resolve(spec).version
            statuses = self.manager.version_statuses(spec.name, version)
            return get_model_status_pb2.GetModelStatusResponse(model_version_status=statuses)

        return _run_guarded("GetModelStatus", context, handle)


def _format_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


class ModelServer:
    """The gRPC server: a ServableManager behind PredictionService and ModelService.

    Use as a context manager, or call :meth:`start` and :meth:`stop`. ``port=0`` binds a free
    port; :attr:`port` is the bound one after :meth:`start`.
    """

    def __init__(
        self,
        sources: Sequence[ModelSource],
        *,
        host: str = "127.0.0.1",
        port: int = 8500,
        poll_wait_seconds: float = 1.0,
        max_threads: int | None = None,
        max_num_load_retries: int = 5,
        max_tensor_elements: int = DEFAULT_MAX_TENSOR_ELEMENTS,
    ) -> None:
        self.host = host
        self.port = port
        self.max_threads = max_threads or max(8, 4 * (os.cpu_count() or 1))
        self.manager = ServableManager(
            sources,
            poll_wait_seconds=poll_wait_seconds,
            max_num_load_retries=max_num_load_retries,
            max_tensor_elements=max_tensor_elements,
        )
        self._server: grpc.Server | None = None

    @property
    def address(self) -> str:
        """``host:port`` clients connect to."""
        return _format_address(self.host, self.port)

    def start(self) -> ModelServer:
        """Loads the initial versions, starts polling and starts answering on the port."""
        self.manager.poll_once()
        self.manager.start()
        server = grpc.server(
            concurrent.futures.ThreadPoolExecutor(
                max_workers=self.max_threads, thread_name_prefix="grpc"
            ),
            options=[
                ("grpc.max_receive_message_length", GRPC_MAX_MESSAGE_BYTES),
                ("grpc.max_send_message_length", GRPC_MAX_MESSAGE_BYTES),
                ("grpc.so_reuseport", 0),
            ],
        )
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
            PredictionServicer(self.manager), server
        )
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(
            ModelServicer(self.manager), server
        )
        try:
            bound = server.add_insecure_port(_format_address(self.host, self.port))
        except RuntimeError as exc:
            self.manager.stop()
            raise OSError(f"cannot bind {self.address}: {exc}") from None
        if bound == 0:
            self.manager.stop()
            raise OSError(f"cannot bind {self.address}")
        self.port = bound
        server.start()
        self._server = server
        logger.info("Running gRPC ModelServer at %s ...", self.address)
        return self

    def stop(self, grace: float | None = 5.0) -> None:
        """Stops accepting requests, lets in-flight ones finish for ``grace`` seconds."""
        if self._server is not None:
            self._server.stop(grace).wait()
            self._server = None
        self.manager.stop()

    def wait_for_termination(self, timeout: float | None = None) -> bool:
        """Blocks until the server stops; returns False when ``timeout`` elapsed first."""
        if self._server is None:
            return True
        return self._server.wait_for_termination(timeout)

    def __enter__(self) -> ModelServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def read_model_config_file(path: str) -> list[ModelSource]:
    """Parses a ``models.config`` (text ModelServerConfig with a ``model_config_list``)."""
    config = model_server_config_pb2.ModelServerConfig()
    with tf.io.gfile.GFile(path, "r") as f:
        text_format.Parse(f.read(), config)
    if config.WhichOneof("config") != "model_config_list":
        raise ValueError(f"{path}: only model_config_list is supported")
    models = config.model_config_list.config
    if not models:
        raise ValueError(f"{path}: model_config_list has no models")
    sources = []
    for model in models:
        if model.model_platform not in ("", "tensorflow"):
            raise ValueError(
                f"{path}: model {model.name}: unsupported platform {model.model_platform}"
            )
        if not model.name or not model.base_path:
            raise ValueError(f"{path}: every model needs a name and a base_path")
        base_path = model.base_path
        if "://" not in base_path and not os.path.isabs(base_path):
            base_path = os.path.join(os.path.dirname(os.path.abspath(path)), base_path)
        policy = _ServableVersionPolicy()
        policy.CopyFrom(model.model_version_policy)
        sources.append(
            ModelSource(
                name=model.name,
                base_path=base_path,
                version_policy=policy,
                version_labels=dict(model.version_labels),
            )
        )
    return sources


def build_arg_parser() -> argparse.ArgumentParser:
    """The command line, with ``tensorflow_model_server``'s flag names."""
    parser = argparse.ArgumentParser(
        prog="python -m export.serve",
        description="Local gRPC model server with the tensorflow_model_server API subset.",
    )
    parser.add_argument("--port", type=int, default=8500, help="gRPC port (0: a free port)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback)")
    parser.add_argument("--model_name", default="default", help="name of the single model")
    parser.add_argument("--model_base_path", default="", help="directory of integer versions")
    parser.add_argument(
        "--model_config_file", default="", help="models.config with a model_config_list"
    )
    parser.add_argument(
        "--file_system_poll_wait_seconds",
        type=float,
        default=1.0,
        help="seconds between polls for new versions; <= 0 polls once at start-up",
    )
    parser.add_argument(
        "--max_num_load_retries", type=int, default=5, help="retries of a failed version load"
    )
    parser.add_argument(
        "--grpc_max_threads", type=int, default=0, help="request threads (0: 4 per CPU, >= 8)"
    )
    parser.add_argument(
        "--max_tensor_elements",
        type=int,
        default=DEFAULT_MAX_TENSOR_ELEMENTS,
        help="largest accepted input tensor, in elements",
    )
    parser.add_argument(
        "--enable_batching",
        action="store_true",
        help="accepted for compatibility; requests are not batched across clients here",
    )
    parser.add_argument(
        "--batching_parameters_file", default="", help="accepted for compatibility; not used"
    )
    parser.add_argument("--rest_api_port", type=int, default=0, help="REST is not served; keep 0")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the server until SIGINT or SIGTERM."""
    args = build_arg_parser().parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if bool(args.model_base_path) == bool(args.model_config_file):
        logger.error("give exactly one of --model_base_path or --model_config_file")
        return 2
    if args.rest_api_port:
        logger.error("--rest_api_port is not supported by this server; use gRPC on --port")
        return 2
    if args.enable_batching or args.batching_parameters_file:
        logger.info("batching flags accepted; this server runs each request as it comes")
    try:
        if args.model_config_file:
            sources = read_model_config_file(args.model_config_file)
        else:
            sources = [ModelSource(args.model_name, os.path.abspath(args.model_base_path))]
    except (OSError, ValueError, text_format.ParseError) as exc:
        logger.error("bad model configuration: %s", exc)
        return 2
    server = ModelServer(
        sources,
        host=args.host,
        port=args.port,
        poll_wait_seconds=args.file_system_poll_wait_seconds,
        max_threads=args.grpc_max_threads or None,
        max_num_load_retries=args.max_num_load_retries,
        max_tensor_elements=args.max_tensor_elements,
    )
    stop = threading.Event()

    def request_stop(signum: int, _frame: object) -> None:
        logger.info("received %s, shutting down", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    try:
        server.start()
    except OSError as exc:
        logger.error("%s", exc)
        return 1
    while not stop.wait(1.0):
        pass
    server.stop(grace=5.0)
    logger.info("server stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
