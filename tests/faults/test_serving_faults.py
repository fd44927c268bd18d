"""Serving faults against a real `python -m export.serve` process: a server killed with
SIGKILL under load and restarted answers as before; clients that vanish mid-request or send
a 64 MB message do not disturb the others."""

import pathlib
import socket
import subprocess
import sys
import threading
import time

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc
from unisrec_factory import exported

from export.client import ServingClient, ServingClientError
from export.serve import ModelSource, PredictionServicer, ServableManager
from export.server_process import ModelServerProcess

MODEL = "unisrec"
HISTORIES = [["P001", "P004"], ["P003"], ["P010", "P002", "P007"], ["P005", "unknown"]]


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> pathlib.Path:
    """A tiny SASRec run's export (no text encoder: quick to export and to load)."""
    return pathlib.Path(exported(tmp_path_factory.mktemp("serving-faults"), "sasrec").path).parent


def answers(client: ServingClient) -> list[tuple]:
    results = [client.recommend(history, k=5) for history in HISTORIES]
    return [(r.item_ids.tolist(), r.scores.tolist()) for r in results]


class Clients:
    """Threads asking for HISTORIES over and over; each answer is "ok" (equal to `reference`),
    "wrong", or the gRPC status code's name."""

    def __init__(self, address: str, reference: list[tuple], threads: int = 2) -> None:
        self.address, self.reference = address, reference
        self.outcomes: list[str] = []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.run) for _ in range(threads)]
        for thread in self.threads:
            thread.start()

    def run(self) -> None:
        channel = grpc.insecure_channel(self.address, options=[
            ("grpc.initial_reconnect_backoff_ms", 100), ("grpc.max_reconnect_backoff_ms", 500)
        ])  # fmt: skip
        with channel, ServingClient(self.address, MODEL, timeout=60, channel=channel) as client:
            while not self.stop.is_set():
                try:
                    self.outcomes.append("ok" if answers(client) == self.reference else "wrong")
                except ServingClientError as error:
                    self.outcomes.append(error.code.name)
                    time.sleep(0.05)

    def join(self) -> list[str]:
        self.stop.set()
        for thread in self.threads:
            thread.join()
        return self.outcomes


def start(base: pathlib.Path, log: pathlib.Path, port: int | None = None) -> ModelServerProcess:
    return ModelServerProcess.create("export.serve", str(base), MODEL, str(log), port=port).start()


@pytest.mark.slow  # two server starts: about 30 s on 2 cores
def test_server_killed_under_load_and_restarted_answers_the_same(base, tmp_path):
    server = start(base, tmp_path / "server.log")
    port = int(server.address.rsplit(":", 1)[1])
    try:
        with ServingClient(server.address, MODEL) as client:
            reference = answers(client)
        clients = Clients(server.address, reference)
        time.sleep(1.0)
        server.kill()
        served_before_kill = clients.outcomes.count("ok")
        time.sleep(0.5)
        server = start(base, tmp_path / "server.log", port=port)
        time.sleep(2.0)
        outcomes = clients.join()
        with ServingClient(server.address, MODEL) as client:
            assert answers(client) == reference
    finally:
        server.stop()
    assert served_before_kill > 0 and "UNAVAILABLE" in outcomes  # the kill was under load
    assert set(outcomes) <= {"ok", "UNAVAILABLE"}  # refused while down, never a wrong answer
    assert outcomes[-1] == "ok" and outcomes.count("ok") > served_before_kill


KILLED_CLIENT = """
import sys, grpc
payload = open(sys.argv[2], "rb").read()
channel = grpc.insecure_channel(sys.argv[1], options=[("grpc.max_send_message_length", -1)])
predict = channel.unary_unary("/tensorflow.serving.PredictionService/Predict")
print("sending", flush=True)
predict(payload, timeout=600)
"""


def large_request() -> predict_pb2.PredictRequest:
    """64 MB: a batch of 1024 histories of 1024 item IDs of 64 bytes."""
    ids = np.array([b"P%063d" % (i % 18) for i in range(1 << 20)], dtype=object)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL
    request.inputs["history"].CopyFrom(tf.make_tensor_proto(ids.reshape(1024, 1024)))
    return request


@pytest.mark.slow  # 64 MB requests computed three times: about 30 s on 2 cores
def test_vanishing_and_64mb_clients_do_not_disturb_the_others(base, tmp_path):
    server = start(base, tmp_path / "server.log")
    request = large_request()
    assert request.ByteSize() >= 64 << 20
    payload = tmp_path / "request.bin"
    payload.write_bytes(request.SerializeToString())
    script = tmp_path / "client.py"
    script.write_text(KILLED_CLIENT)
    host, port = server.address.rsplit(":", 1)
    channel = grpc.insecure_channel(server.address, options=[
        ("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)])  # fmt: skip
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    try:
        with ServingClient(server.address, MODEL) as client:
            reference = answers(client)
        clients = Clients(server.address, reference)
        # A client process killed while its 64 MB request is sent or computed.
        killed = subprocess.Popen([sys.executable, str(script), server.address, str(payload)],
                                  stdout=subprocess.PIPE)  # fmt: skip
        assert killed.stdout.readline() == b"sending\n"
        time.sleep(0.5)
        killed.kill()
        killed.wait()
        # A call cancelled mid-request, and a request cut off after its first bytes.
        cancelled = stub.Predict.future(request, timeout=600)
        time.sleep(0.2)
        cancelled.cancel()
        with socket.create_connection((host, int(port))) as raw:
            raw.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x40\x01\x04\x00\x00\x00\x01")
        # And a 64 MB request answered in full.
        response = stub.Predict(request, timeout=600)
        assert tf.make_ndarray(response.outputs["item_ids"]).shape == (1024, 10)
        time.sleep(1.0)
        outcomes = clients.join()
        assert server.process.poll() is None
        with ServingClient(server.address, MODEL) as client:
            assert answers(client) == reference
    finally:
        channel.close()
        server.stop()
    assert len(outcomes) > 10 and set(outcomes) == {"ok"}


class GoneClient:
    """A servicer context whose client has cancelled or disconnected."""

    def is_active(self) -> bool:
        return False

    def abort(self, code: grpc.StatusCode, details: str) -> None:
        raise Aborted(code, details)


class Aborted(Exception):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(code, details)
        self.code = code


def test_a_request_whose_client_has_gone_is_dropped_before_it_runs(base):
    manager = ServableManager([ModelSource(MODEL, str(base))], poll_wait_seconds=0)
    manager.poll_once()
    servicer = PredictionServicer(manager)
    with ServingClient("unused:0", MODEL) as client:
        request = client.predict_request({"history": [["P001", "P004"]]})
    assert servicer.Predict(request, None).outputs["item_ids"]  # runs for a present client
    with pytest.raises(Aborted) as aborted:
        servicer.Predict(request, GoneClient())
    assert aborted.value.code == grpc.StatusCode.CANCELLED
    manager.stop()
