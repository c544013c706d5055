"""The embedding service: FaceNet over gRPC, 128-d unit vectors, dynamic batching across callers."""
