"""Retrieval over a person's own documents: ingest, hybrid search, cited answers, evaluation.

    wave rag ingest ~/notes --collection notes    files -> chunks -> vectors (through the fleet)
    wave rag search notes "how do I ..."          BM25 + dense, fused by RRF or a convex mix
    model "rag/notes" on the gateway              answers with citations, streamed
    wave rag eval                                 nDCG@10, recall@k, MRR, faithfulness

The parts: documents.py (reading files), chunking.py (token windows), model.py (the bundled
embedding model as GGUF), embedder.py (the /v1/embeddings contract), embed_server.py (the
engine that serves it), store.py + index.py (SQLite FTS5 and an HNSW graph), fusion.py and
retrieve.py (ranking), answer.py + seam.py (the gateway's `rag/NAME` models), evaluate.py.
"""
