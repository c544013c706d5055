"""The detection service: MTCNN over gRPC, boxes, five landmarks and aligned 160x160 crops."""
