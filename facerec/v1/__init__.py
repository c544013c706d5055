"""Generated protobuf and gRPC stubs of the public contract (package facerec.v1). Regenerate with `make protos`."""
