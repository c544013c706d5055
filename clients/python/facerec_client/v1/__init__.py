"""Generated protobuf and gRPC stubs of facerec's contract (package facerec.v1). Regenerate with `make protos`."""
