"""The gallery: identities and faces in a durable store, a FAISS index, an SVM gated by a calibrated threshold."""
