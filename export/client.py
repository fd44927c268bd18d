"""A gRPC client for TF-Serving's ``PredictionService`` (``tensorflow-serving-api``).

It talks to ``tensorflow_model_server`` and to ``python -m export.serve`` alike::

    python -m export.client --server 127.0.0.1:8500 --model unisrec --history B0001 B0042 --k 10
    python -m export.client --server 127.0.0.1:8500 --model unisrec --texts "nitrile gloves" --k 5
    python -m export.client --server 127.0.0.1:8500 --model unisrec --metadata

and as a library::

    with ServingClient("127.0.0.1:8500", "unisrec") as client:
        result = client.recommend(["B0001", "B0042"], k=10)
        print(result.item_ids[0], result.scores[0])
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from data_pipeline.dataset import ITEM_TABLE, read_item_table
from data_pipeline.errors import DataError
from export.contract import (
    ENCODE_ITEMS,
    ENCODE_SEQUENCE,
    HISTORY,
    HISTORY_TEXTS,
    ITEM_IDS,
    ITEM_TEXTS,
    ITEM_VECTORS,
    RECOMMEND_FROM_TEXTS,
    SCORES,
    SEQUENCE_VECTORS,
    SERVING_DEFAULT,
    TEXTS,
    TOP_K,
    UNKNOWN_ITEMS,
    Tensor,
)

HistoryLike = Sequence[str | bytes] | Sequence[Sequence[str | bytes]] | np.ndarray
TextsLike = Sequence[str | bytes] | np.ndarray


class ServingClientError(Exception):
    """A failed call: the gRPC status code, the server's message and the address."""

    def __init__(self, code: grpc.StatusCode | None, details: str, address: str) -> None:
        self.code = code
        self.details = details
        self.address = address
        if code == grpc.StatusCode.UNAVAILABLE:
            message = f"cannot reach the model server at {address} (UNAVAILABLE): {details}"
        elif code == grpc.StatusCode.DEADLINE_EXCEEDED:
            message = f"no answer from the model server at {address} in time: {details}"
        else:
            name = code.name if code is not None else "UNKNOWN"
            message = f"{name}: {details}"
        super().__init__(message)


@dataclasses.dataclass(frozen=True)
class PredictResult:
    """The outputs of one Predict call, as arrays, and which servable answered."""

    outputs: dict[str, np.ndarray]
    model_name: str
    model_version: int | None
    signature_name: str


@dataclasses.dataclass(frozen=True)
class Recommendations:
    """Top-k lists for a batch of users: ``item_ids[b, r]`` is user b's item at rank r + 1."""

    item_ids: np.ndarray
    scores: np.ndarray
    unknown_items: np.ndarray | None
    item_texts: np.ndarray | None
    result: PredictResult


def _to_bytes(value: str | bytes | np.bytes_ | np.str_) -> bytes:
    if isinstance(value, bytes | np.bytes_):
        return bytes(value)
    return str(value).encode("utf-8")


def _decode(array: np.ndarray) -> np.ndarray:
    if array.dtype != object:
        return array
    decoded = [
        v.decode("utf-8", errors="replace") if isinstance(v, bytes) else v for v in array.flat
    ]
    return np.array(decoded, dtype=object).reshape(array.shape)


def string_matrix(rows: HistoryLike) -> np.ndarray:
    """A [B, T] bytes array from one history (a list of strings) or a batch of them.

    Shorter histories are right-padded with empty strings.
    """
    if isinstance(rows, np.ndarray):
        array = rows if rows.ndim == 2 else rows.reshape(1, -1)
        return np.vectorize(_to_bytes, otypes=[object])(array) if array.size else array
    rows = list(rows)
    if rows and isinstance(rows[0], str | bytes | np.str_ | np.bytes_):
        rows = [rows]
    width = max((len(row) for row in rows), default=0)
    matrix = np.full((len(rows), width), b"", dtype=object)
    for i, row in enumerate(rows):
        for j, value in enumerate(row):
            matrix[i, j] = _to_bytes(value)
    return matrix


def string_vector(texts: TextsLike) -> np.ndarray:
    """A [N] bytes array."""
    if isinstance(texts, str | bytes):
        texts = [texts]
    return np.array([_to_bytes(t) for t in texts], dtype=object).reshape(-1)


def make_tensor_proto(value: Any, dtype: tf.DType | str | None = None) -> tensor_pb2.TensorProto:
    """A TensorProto for a request input (TensorProtos pass through)."""
    if isinstance(value, tensor_pb2.TensorProto):
        return value
    return tf.make_tensor_proto(value, dtype=dtype)


def _inputs(*values: tuple[Tensor, Any]) -> dict[str, tensor_pb2.TensorProto]:
    """Request inputs from (contract tensor, value) pairs; ``None`` leaves the model's default."""
    return {t.alias: make_tensor_proto(v, t.dtype) for t, v in values if v is not None}


class ServingClient:
    """Calls one model on a TF-Serving-compatible gRPC server.

    Args:
        server: ``host:port``.
        model: the model name.
        version: ask for this version (default: the latest the server has).
        version_label: ask for the version with this label.
        timeout: seconds per call.
        channel: an existing channel (the client then does not close it).
    """

    def __init__(
        self,
        server: str,
        model: str,
        *,
        version: int | None = None,
        version_label: str | None = None,
        timeout: float = 10.0,
        channel: grpc.Channel | None = None,
    ) -> None:
        if version is not None and version_label is not None:
            raise ValueError("give version or version_label, not both")
        self.server = server
        self.model = model
        self.version = version
        self.version_label = version_label
        self.timeout = timeout
        self._owns_channel = channel is None
        self.channel = channel or grpc.insecure_channel(
            server,
            options=[
                ("grpc.max_receive_message_length", 2**31 - 1),
                ("grpc.max_send_message_length", 2**31 - 1),
            ],
        )
        self.stub = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)
        self.model_stub = model_service_pb2_grpc.ModelServiceStub(self.channel)

    def close(self) -> None:
        """Closes the channel when the client opened it."""
        if self._owns_channel:
            self.channel.close()

    def __enter__(self) -> ServingClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _fill_model_spec(self, spec: Any, signature_name: str | None = None) -> None:
        spec.name = self.model
        if self.version is not None:
            spec.version.value = self.version
        elif self.version_label is not None:
            spec.version_label = self.version_label
        if signature_name is not None:
            spec.signature_name = signature_name

    def _call(self, method: Any, request: Any, timeout: float | None = None) -> Any:
        try:
            return method(request, timeout=self.timeout if timeout is None else timeout)
        except grpc.RpcError as exc:
            code = exc.code() if hasattr(exc, "code") else None
            details = exc.details() if hasattr(exc, "details") else str(exc)
            raise ServingClientError(code, details or "", self.server) from None

    def predict_request(
        self,
        inputs: Mapping[str, Any],
        signature_name: str = SERVING_DEFAULT,
        output_filter: Iterable[str] = (),
    ) -> predict_pb2.PredictRequest:
        """Builds a PredictRequest; inputs are arrays, Python values or TensorProtos."""
        request = predict_pb2.PredictRequest()
        self._fill_model_spec(request.model_spec, signature_name)
        for alias, value in inputs.items():
            request.inputs[alias].CopyFrom(make_tensor_proto(value))
        request.output_filter.extend(output_filter)
        return request

    def predict_raw(
        self, request: predict_pb2.PredictRequest, timeout: float | None = None
    ) -> predict_pb2.PredictResponse:
        """Sends a prepared PredictRequest as it is."""
        return self._call(self.stub.Predict, request, timeout)

    def predict(
        self,
        inputs: Mapping[str, Any],
        signature_name: str = SERVING_DEFAULT,
        output_filter: Iterable[str] = (),
    ) -> PredictResult:
        """Calls a signature; returns its outputs as NumPy arrays (strings as bytes)."""
        response = self.predict_raw(self.predict_request(inputs, signature_name, output_filter))
        spec = response.model_spec
        return PredictResult(
            outputs={alias: tf.make_ndarray(proto) for alias, proto in response.outputs.items()},
            model_name=spec.name,
            model_version=spec.version.value if spec.HasField("version") else None,
            signature_name=spec.signature_name or signature_name,
        )

    def _recommendations(self, result: PredictResult) -> Recommendations:
        outputs = result.outputs
        texts = outputs.get(ITEM_TEXTS.alias)
        return Recommendations(
            item_ids=_decode(outputs[ITEM_IDS.alias]),
            scores=outputs[SCORES.alias],
            unknown_items=outputs.get(UNKNOWN_ITEMS.alias),
            item_texts=_decode(texts) if texts is not None else None,
            result=result,
        )

    def recommend(
        self, history: HistoryLike, k: int | None = None, signature_name: str = SERVING_DEFAULT
    ) -> Recommendations:
        """Top-k items for one history of item IDs or a batch of them (default k: the model's)."""
        inputs = _inputs((HISTORY, string_matrix(history)), (TOP_K, k))
        return self._recommendations(self.predict(inputs, signature_name))

    def recommend_from_texts(
        self,
        history_texts: HistoryLike,
        k: int | None = None,
        signature_name: str = RECOMMEND_FROM_TEXTS,
    ) -> Recommendations:
        """Top-k items for histories given as item texts (items the model never saw)."""
        inputs = _inputs((HISTORY_TEXTS, string_matrix(history_texts)), (TOP_K, k))
        return self._recommendations(self.predict(inputs, signature_name))

    def encode_items(self, texts: TextsLike, signature_name: str = ENCODE_ITEMS) -> np.ndarray:
        """Item vectors [N, D] from item texts."""
        inputs = _inputs((TEXTS, string_vector(texts)))
        return self.predict(inputs, signature_name).outputs[ITEM_VECTORS.alias]

    def encode_sequence(
        self, history: HistoryLike, signature_name: str = ENCODE_SEQUENCE
    ) -> np.ndarray:
        """Sequence vectors [B, D] for histories of item IDs."""
        inputs = _inputs((HISTORY, string_matrix(history)))
        return self.predict(inputs, signature_name).outputs[SEQUENCE_VECTORS.alias]

    def metadata(self) -> dict[str, meta_graph_pb2.SignatureDef]:
        """The model's SignatureDefs from GetModelMetadata (``signature_def`` field)."""
        request = get_model_metadata_pb2.GetModelMetadataRequest()
        self._fill_model_spec(request.model_spec)
        request.metadata_field.append("signature_def")
        response = self._call(self.stub.GetModelMetadata, request)
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(signature_map)
        return dict(signature_map.signature_def)

    def status(self) -> list[tuple[int, str]]:
        """(version, state name) pairs from ModelService.GetModelStatus."""
        request = get_model_status_pb2.GetModelStatusRequest()
        self._fill_model_spec(request.model_spec)
        response = self._call(self.model_stub.GetModelStatus, request)
        state_names = get_model_status_pb2.ModelVersionStatus.State.Name
        return [(s.version, state_names(s.state)) for s in response.model_version_status]

    def wait_until_ready(self, timeout: float = 60.0) -> None:
        """Waits for the channel to connect and a version of the model to be available.

        Raises:
            ServingClientError: UNAVAILABLE when no version became available in time.
        """
        deadline = time.monotonic() + timeout
        last: ServingClientError | None = None
        while time.monotonic() < deadline:
            try:
                if any(state == "AVAILABLE" for _, state in self.status()):
                    return
            except ServingClientError as exc:
                last = exc
            time.sleep(0.1)
        details = last.details if last else f"model {self.model} has no available version"
        raise ServingClientError(grpc.StatusCode.UNAVAILABLE, details, self.server)


def describe_signatures(signatures: Mapping[str, meta_graph_pb2.SignatureDef]) -> str:
    """One line per signature: ``name(input: dtype[shape], ...) -> (output: ..., ...)``."""

    def tensor(alias: str, info: Any) -> str:
        shape = info.tensor_shape
        dims = (
            "?"
            if shape.unknown_rank
            else ",".join("?" if d.size < 0 else str(d.size) for d in shape.dim)
        )
        try:
            dtype = tf.dtypes.as_dtype(info.dtype).name
        except TypeError:
            dtype = f"dtype{info.dtype}"
        return f"{alias}: {dtype}[{dims}]"

    lines = []
    for name in sorted(signatures):
        sig = signatures[name]
        if name.startswith("__") or (not sig.inputs and not sig.outputs):
            continue
        inputs = ", ".join(
            tensor(a, sig.inputs[a]) + (" = default" if a in sig.defaults else "")
            for a in sorted(sig.inputs)
        )
        outputs = ", ".join(tensor(a, sig.outputs[a]) for a in sorted(sig.outputs))
        lines.append(f"{name}({inputs}) -> ({outputs})")
    return "\n".join(lines)


def format_recommendations(
    recs: Recommendations, row: int = 0, item_table: Mapping[str, str] | None = None
) -> str:
    """A table of rank, item id, score and (when known) item text for one user."""
    ids = recs.item_ids[row]
    scores = recs.scores[row]
    if recs.item_texts is not None:
        texts: list[str] | None = [str(t) for t in recs.item_texts[row]]
    elif item_table:
        texts = [item_table.get(str(i), "") for i in ids]
    else:
        texts = None
    id_width = max([len("item_id")] + [len(str(i)) for i in ids])
    header = f"{'rank':>4}  {'item_id':<{id_width}}  {'score':>9}"
    lines = [header + ("  text" if texts is not None else "")]
    for rank, (item_id, score) in enumerate(zip(ids, scores, strict=True), start=1):
        line = f"{rank:>4}  {str(item_id):<{id_width}}  {float(score):>9.4f}"
        if texts is not None:
            line += f"  {texts[rank - 1]}"
        lines.append(line)
    return "\n".join(lines)


def item_texts_by_id(path: str | os.PathLike) -> dict[str, str]:
    """item_id -> text from a dataset folder's ``items.tsv`` (or the folder itself)."""
    if os.path.isdir(path):
        path = os.path.join(path, ITEM_TABLE)
    table = read_item_table(path)
    return dict(zip(table.item_ids[1:], table.texts[1:], strict=True))


def build_arg_parser() -> argparse.ArgumentParser:
    """The command line."""
    parser = argparse.ArgumentParser(
        prog="python -m export.client",
        description="Query a TF-Serving-compatible model server over gRPC.",
    )
    parser.add_argument("--server", default="127.0.0.1:8500", help="host:port")
    parser.add_argument("--model", required=True, help="model name")
    query = parser.add_mutually_exclusive_group()
    query.add_argument("--history", nargs="+", metavar="ID", help="a history of item IDs")
    query.add_argument("--texts", nargs="+", metavar="TEXT", help="item texts")
    parser.add_argument("--k", type=int, default=None, help="how many items (default: model's)")
    parser.add_argument(
        "--signature",
        default=None,
        help=f"signature to call (default: {SERVING_DEFAULT} for --history, "
        f"{RECOMMEND_FROM_TEXTS} for --texts)",
    )
    version = parser.add_mutually_exclusive_group()
    version.add_argument("--version", type=int, default=None, help="model version")
    version.add_argument("--version_label", default=None, help="model version label")
    parser.add_argument("--metadata", action="store_true", help="print the model's signatures")
    parser.add_argument(
        "--item_table",
        default=None,
        help="a dataset folder or its items.tsv, for item texts the server does not return",
    )
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per call")
    return parser


def _print_vectors(label: str, names: Sequence[str], vectors: np.ndarray) -> None:
    print(f"{label}: {vectors.shape[0]} x {vectors.shape[-1] if vectors.ndim > 1 else 1}")
    with np.printoptions(precision=4, suppress=True, threshold=16, edgeitems=4):
        for name, vector in zip(names, vectors, strict=False):
            print(f"  {name}: {vector}")


def run(args: argparse.Namespace) -> None:
    """Executes the parsed command line; raises ServingClientError on failure."""
    item_table = item_texts_by_id(args.item_table) if args.item_table else None
    with ServingClient(
        args.server,
        args.model,
        version=args.version,
        version_label=args.version_label,
        timeout=args.timeout,
    ) as client:
        if args.metadata:
            print(describe_signatures(client.metadata()))
        if args.history is None and args.texts is None:
            return
        if args.history is not None:
            signature = args.signature or SERVING_DEFAULT
            if signature == ENCODE_SEQUENCE:
                vectors = client.encode_sequence(args.history, signature)
                _print_vectors("sequence vector", ["history"], vectors)
                return
            recs = client.recommend(args.history, args.k, signature)
        else:
            signature = args.signature or RECOMMEND_FROM_TEXTS
            if signature == ENCODE_ITEMS:
                vectors = client.encode_items(args.texts, signature)
                _print_vectors("item vectors", args.texts, vectors)
                return
            recs = client.recommend_from_texts([args.texts], args.k, signature)
        result = recs.result
        print(f"model {result.model_name} version {result.model_version} signature {signature}")
        if recs.unknown_items is not None and int(recs.unknown_items[0]):
            print(f"skipped {int(recs.unknown_items[0])} unknown item ID(s) in the history")
        print(format_recommendations(recs, 0, item_table))


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point: 0 on success, 1 on a server or connection error."""
    parser = build_arg_parser()
    args = parser.parse_args(argv)
    if args.history is None and args.texts is None and not args.metadata:
        parser.error("give --history, --texts or --metadata")
    try:
        run(args)
    except ServingClientError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (OSError, DataError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
