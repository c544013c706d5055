"""Streaming calls (health Watch, server reflection) get their own few threads, never the unary calls' ones.

gRPC's synchronous server runs a stream on a worker thread for as long as the stream stays open. Health
and reflection take no token (probes and `grpcurl list` need them), so anyone can open them and leave
them idle: sixteen such streams held every worker and Stats and health Check timed out. The server's
pool gets max_streams threads more than its unary workers, and this interceptor refuses a stream beyond
max_streams at once (RESOURCE_EXHAUSTED), so open streams can never take a thread a unary call needs.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import grpc

from facerec.errors import Overloaded
from facerec.status import abort


class StreamLimit(grpc.ServerInterceptor):  # type: ignore[type-arg]  # generic only in grpc-stubs
    """At most max_streams streaming calls (request or response streams) open at once; more are refused."""

    def __init__(self, max_streams: int) -> None:
        self.max_streams = max_streams
        self._open = 0
        self._lock = threading.Lock()

    @property
    def open(self) -> int:
        return self._open

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler[Any, Any] | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = continuation(handler_call_details)
        if handler is None or not (handler.request_streaming or handler.response_streaming):
            return handler
        if handler.stream_stream is not None:
            return grpc.stream_stream_rpc_method_handler(
                self._limited(handler.stream_stream),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                self._limited(handler.unary_stream),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return grpc.stream_unary_rpc_method_handler(
            self._limited(handler.stream_unary),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    def _limited(self, behaviour: Any) -> Any:
        def run(request: Any, context: grpc.ServicerContext) -> Any:
            with self._lock:
                if self._open >= self.max_streams:
                    refused = True
                else:
                    refused = False
                    self._open += 1
            if refused:
                abort(
                    context,
                    Overloaded(
                        f"{self.max_streams} streams are open on this server, its limit; try again later."
                    ),
                )
            released = threading.Event()

            def release() -> None:
                # add_callback runs when the call ends however it ends (finished, cancelled, timed out).
                if not released.is_set():
                    released.set()
                    with self._lock:
                        self._open -= 1

            if not context.add_callback(release):
                release()  # the call has already ended
            return behaviour(request, context)

        return run
